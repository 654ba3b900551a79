#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript):
# prints the GPUs of this node as Spark's resource JSON, e.g.
#   {"name": "gpu", "addresses": ["0","1"]}
# Install on every node (EMR bootstrap action / Databricks init script).
ADDRS=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/","/g')
echo "{\"name\": \"gpu\", \"addresses\": [\"$ADDRS\"]}"
