"""The disk-backed local broker's object store: ``python -m musify.broker.store DIR --port P``.

Tansu's ``s3://`` storage engine keeps each record batch, watermark and consumer-group
offset as an object; PyPI's ``localbucket`` serves them as plain files under DIR (an
S3-compatible server with the conditional PUTs Tansu coordinates with). This wrapper
only silences its per-request log: one line per produced batch would be most of the
broker's log. ``musify.broker.local`` starts it on 127.0.0.1 when
``MUSIFY_BROKER_STORAGE=disk``.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> None:
    # localbucket configures logging only if nothing has (logging.basicConfig).
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    try:
        import localbucket
    except ImportError:
        sys.exit("the disk-backed broker needs localbucket: pip install 'musify[broker]'")
    sys.argv = ["localbucket", *(sys.argv[1:] if argv is None else argv)]
    localbucket.main()


if __name__ == "__main__":
    main()
