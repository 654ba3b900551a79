#!/usr/bin/env bash
# EMR 7 bootstrap action (runs on every node before YARN starts): Python 3.11, the package and its
# dependencies in a venv, the GPU discovery script and the model files.
#   --bootstrap-actions Path=s3://my-bucket/spark-jql/emr-bootstrap.sh,Args=[s3://my-bucket/spark-jql]
# EMR 7 (Amazon Linux 2023) has python3 = 3.9; spark_jql (and transformers 5.24) need >= 3.11.
# Spark uses the venv through spark.pyspark.python (conf/emr.yaml, conf/emr-step.json) and
# PYSPARK_PYTHON (conf/emr-configurations.json, classification spark-env).
# Upload first (see README "On a cluster"), on a machine with Hub access:
#   spark-jql package --output build/emr
#   spark-jql fetch-models --output build/emr/models --prefix /mnt/models   # the layout conf/emr.yaml reads
#   aws s3 cp --recursive build/emr s3://my-bucket/spark-jql/
# $SRC/models/ then holds snowflake-arctic-embed-m-v2.0/, JQL-Edu-Heads/checkpoints/*.ckpt and manifest.json
# (every file's size and sha256); the last line below copies it to /mnt/models on every node.
set -euo pipefail
SRC=${1:-s3://my-bucket/spark-jql}
VENV=/opt/spark-jql/venv
sudo dnf install -y -q python3.11 python3.11-pip
sudo mkdir -p /opt/spark-jql /mnt/models
sudo python3.11 -m venv "$VENV"
sudo "$VENV/bin/python" -m pip install --quiet --upgrade pip
# CUDA build of torch first, so the package's own install does not pull a different one.
sudo "$VENV/bin/pip" install --quiet "torch>=2.13.0,<3" --index-url https://download.pytorch.org/whl/cu128
aws s3 cp "$SRC/spark_jql-0.1.0-py3-none-any.whl" /tmp/
# EMR 7 runs Spark 3.5: keep the pyspark the cluster provides out of the venv's way by pinning 3.5.
sudo "$VENV/bin/pip" install --quiet "/tmp/spark_jql-0.1.0-py3-none-any.whl[report,langid]" "pyspark==3.5.9"
aws s3 cp "$SRC/conf/getGpusResources.sh" /tmp/getGpusResources.sh
sudo install -m 755 /tmp/getGpusResources.sh /opt/spark-jql/getGpusResources.sh
sudo aws s3 cp --recursive "$SRC/models/" /mnt/models/ --only-show-errors
