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
# The ranges are pyproject.toml's (tested: .ci/constraints.txt); Databricks 16.4 LTS ML runs Python 3.12.
"$PIP" install --quiet "transformers>=5.24.0,<6" "tokenizers>=0.23.3,<1" "safetensors>=0.8.0,<1" \
  "huggingface_hub>=2.4.0,<3" "pydantic>=2.14.4,<3" "pyyaml>=6.0.4,<7" "matplotlib>=3.11.2,<4" \
  "lingua-language-detector>=2.1.1,<3"
