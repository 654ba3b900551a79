#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript):
# prints the GPUs of this node as Spark's resource JSON, e.g.
#   {"name": "gpu", "addresses": ["0","1"]}
# Install on every node (EMR bootstrap action / Databricks init script).
# A node without a working GPU (no nvidia-smi, a driver error, "No devices were found", no index) makes the
# script fail with a message on stderr, so Spark refuses the executor instead of scheduling on a ghost GPU.
fail() { echo "getGpusResources.sh: $*" >&2; exit 1; }
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found on this node: no GPU driver"
if ! OUT=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>&1); then
  fail "nvidia-smi failed: $(printf '%s' "$OUT" | head -n 1)"
fi
ADDRS=()
while IFS= read -r line; do
  line=${line//[[:space:]]/}
  [[ -z $line ]] && continue
  [[ $line =~ ^[0-9]+$ ]] || fail "nvidia-smi reported no usable GPU index: $(printf '%s' "$OUT" | head -n 1)"
  ADDRS+=("\"$line\"")
done <<<"$OUT"
(( ${#ADDRS[@]} > 0 )) || fail "nvidia-smi lists no GPU on this node"
JOINED=$(IFS=,; echo "${ADDRS[*]}")
echo "{\"name\": \"gpu\", \"addresses\": [$JOINED]}"
