"""Dataproc entry point of the Musify CLI.

    gcloud dataproc jobs submit pyspark gs://<artifacts bucket>/musify_driver.py \
        --cluster musify-spark --region <region> -- stream

The arguments after ``--`` are the ``musify`` command line. The cluster sets the
MUSIFY_* settings in spark-env; the driver's address is this node's name, which the
executors on the worker nodes can reach (the default, loopback, they cannot).
"""

import os
import socket
import sys

os.environ.setdefault("MUSIFY_BIND_HOST", socket.getfqdn())

from musify.cli import main

sys.argv[0] = "musify"
main()
