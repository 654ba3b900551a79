#!/usr/bin/env bash
# Databricks cluster init script: install spark_jql on every node (driver and workers).
# Upload the wheel (python -m pip wheel --no-deps . -w dist/) and this script to the workspace,
# and reference the script in the cluster spec (conf/databricks-cluster.json, "init_scripts").
# The GPU ML runtime already has a CUDA build of torch; --no-deps keeps it, and the remaining
# dependencies are installed explicitly so pip never swaps torch for a CPU wheel.
set -euo pipefail
WHEEL=${SPARK_JQL_WHEEL:-/Workspace/Shared/spark-jql/spark_jql-0.1.0-py3-none-any.whl}
PIP=${PIP:-/databricks/python/bin/pip}
"$PIP" install --quiet --no-deps "$WHEEL"
"$PIP" install --quiet "transformers>=5.0,<6" "tokenizers>=0.21" "safetensors>=0.4" "huggingface_hub>=0.30" \
  "pydantic>=2.5,<3" "pyyaml>=6" "matplotlib>=3.7" "lingua-language-detector>=2.0"
