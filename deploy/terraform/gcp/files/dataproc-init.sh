#!/bin/bash
# Dataproc initialization action (every node, at creation): install the Musify wheel
# named in the cluster metadata into the cluster's Python, beside the cluster's pyspark.
set -euo pipefail
meta() { /usr/share/google/get_metadata_value "attributes/$1" || true; }
WHEEL=$(meta musify-wheel)
EXTRAS=$(meta musify-extras)
[ -n "$WHEEL" ] || { echo "no musify-wheel in the cluster metadata" >&2; exit 1; }
gcloud storage cp "$WHEEL" /tmp/
LOCAL="/tmp/$(basename "$WHEEL")"
PIP=/opt/conda/default/bin/pip
if [ -n "$EXTRAS" ]; then
  "$PIP" install --quiet "$LOCAL[$EXTRAS]"
else
  "$PIP" install --quiet "$LOCAL"
fi
mkdir -p /var/lib/musify
