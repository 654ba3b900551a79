#!/usr/bin/env bash
# Run a spark-jql stage on a cluster with spark-submit, shipping the package and the config.
#
#   ./submit.sh CONFIG STAGE [--set key=value ...]
#   ./submit.sh conf/gpu-cluster.yaml run
#   ./submit.sh conf/gpu-cluster.yaml annotate --set io.input=s3://bucket/part-0001/*.parquet
#
# Environment:
#   SPARK_SUBMIT   spark-submit binary (default: spark-submit on PATH)
#   MASTER         --master (default: yarn; EMR uses yarn)
#   DEPLOY_MODE    client | cluster (default: client)
#   EXTRA_ARGS     more spark-submit arguments, e.g. "--num-executors 8"
#   DRY_RUN=1      print the spark-submit command instead of running it
#
# The cluster's Python must have spark_jql's dependencies (torch with CUDA,
# transformers, pyarrow, pandas, pydantic, pyyaml, safetensors, huggingface_hub):
# an EMR bootstrap action or a Databricks cluster library installs them. The
# spark.* settings under `spark.conf` in CONFIG become --conf arguments.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
CONFIG=$1; STAGE=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
[[ -f "$CONFIG" ]] || { echo "submit.sh: config file not found: $CONFIG" >&2; exit 2; }

BUILD=$(mktemp -d -t spark_jql_submit.XXXXXX)
# Ship the package as a zip and the run_job launcher (outside the package directory).
(cd "$HERE" && PYTHONPATH="$HERE" "$PYTHON" -m spark_jql.devtools.package "$BUILD" --no-wheel)

# Validate the config locally (fails fast on typos) and turn spark.conf into --conf.
OVERRIDES=(); prev=""
for a in "$@"; do [[ $prev == --set || $prev == -s ]] && OVERRIDES+=("$a"); prev=$a; done
CONF_LINES=$(cd "$HERE" && PYTHONPATH="$HERE" "$PYTHON" -c '
import sys
from spark_jql.config import ConfigError, load_config
try:
    cfg = load_config(sys.argv[1], sys.argv[2:])
except ConfigError as err:
    sys.exit(f"submit.sh: error: {err}")
for k, v in cfg.spark.conf.items():
    print("--conf"); print(f"{k}={v}")
' "$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")" "${OVERRIDES[@]}") || exit 2
CONF_ARGS=()  # an empty spark.conf must add no argument at all (an empty one breaks spark-submit)
[[ -n $CONF_LINES ]] && mapfile -t CONF_ARGS <<<"$CONF_LINES"

DEPLOY_MODE=${DEPLOY_MODE:-client}
if [[ $DEPLOY_MODE == cluster ]]; then CONFIG_ARG=$(basename "$CONFIG"); else CONFIG_ARG=$CONFIG; fi

CMD=("${SPARK_SUBMIT:-spark-submit}" --master "${MASTER:-yarn}" --deploy-mode "$DEPLOY_MODE"
     --name "spark_jql-$STAGE"
     --py-files "$BUILD/spark_jql.zip" --files "$CONFIG"
     "${CONF_ARGS[@]}" ${EXTRA_ARGS:-}
     "$BUILD/spark_jql_main.py" --config "$CONFIG_ARG" "$@" "$STAGE")

if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
exec "${CMD[@]}"
