#!/usr/bin/env bash
# EMR bootstrap action (runs on every node before YARN starts): Python deps, the package,
# the GPU discovery script and the model files.
#   --bootstrap-actions Path=s3://my-bucket/spark-jql/emr-bootstrap.sh,Args=[s3://my-bucket/spark-jql]
set -euo pipefail
SRC=${1:-s3://my-bucket/spark-jql}
sudo python3 -m pip install --quiet "torch>=2.4" --index-url https://download.pytorch.org/whl/cu124
aws s3 cp "$SRC/spark_jql-0.1.0-py3-none-any.whl" /tmp/
sudo python3 -m pip install --quiet "/tmp/spark_jql-0.1.0-py3-none-any.whl[report,langid]"
sudo mkdir -p /opt/spark-jql /mnt/models
aws s3 cp "$SRC/getGpusResources.sh" /opt/spark-jql/getGpusResources.sh
sudo chmod 755 /opt/spark-jql/getGpusResources.sh
aws s3 cp --recursive "$SRC/models/" /mnt/models/ --only-show-errors
