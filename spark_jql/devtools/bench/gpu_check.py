"""``python -m spark_jql.devtools.bench gpu-check --json OUT``: the GPU check, one command, under 8 minutes.

On one H100/H200: the arctic-embed-m-v2.0 shape with random weights (built once, no download), the
lognormal workload of JQL's mean 690 tokens capped at 8,192, our scorer padded and packed against the
JQL-style baseline (model only and end to end), with docs/min, MFU on real tokens, peak memory, OOM
splits, tokenization docs/s per core and the cores per GPU that implies, all in the JSON file.
``--smoke`` runs the same code on the CPU with a tiny model in seconds (the test suite does).

A bare GPU machine lacks pydantic (spark_jql.config) and pyspark; only pydantic is needed here
(pyspark only for ``--spark``). docs/benchmarks.md says how to carry it as wheels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

GPU_DOCS = 8192
GPU_BASELINE_DOCS = 2000  # the baseline runs ~11,000 docs/min on an A100: bounded so the check stays short
TIME_LIMIT_S = 480


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark-jql bench gpu-check", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--smoke", action="store_true", help="tiny model, few documents, on the CPU (a test of the check)")
    p.add_argument("--docs", type=int, default=None, help=f"documents (default {GPU_DOCS}; smoke 48)")
    p.add_argument("--baseline-docs", type=int, default=None, help=f"baseline documents (default {GPU_BASELINE_DOCS})")
    p.add_argument("--cache-dir", type=Path, default=None, help="where the random model is built (default: a temp dir)")
    p.add_argument("--tokenizer", default=None, help="a local tokenizer directory instead of training one (~1 min)")
    p.add_argument("--spark", action="store_true", help="also the Spark UDF phase (needs pyspark)")
    return p


def bench_argv(args, json_path: Path, cache_dir: Path) -> list[str]:
    """The bench's own options for this check."""
    common = ["--layouts", "padded,packed", "--json", str(json_path), "--cache-dir", str(cache_dir), "--repeats", "1"]
    if args.tokenizer:
        common += ["--tokenizer", str(args.tokenizer)]
    if args.smoke:
        docs = args.docs or 48
        return ["--arch", "gte-tiny", "--docs", str(docs), "--max-length", "256", "--mean-tokens", "60",
                "--device", "cpu", "--dtype", "float32", "--batch-docs", "24", "--baseline-batch", "16",
                "--baseline-docs", str(args.baseline_docs or docs), "--tokenizer-vocab", "400",
                "--assume-gpu", "H200", *common]
    argv = ["--arch", "arctic-embed-m-v2.0", "--docs", str(args.docs or GPU_DOCS), "--max-length", "8192",
            "--mean-tokens", "690", "--device", "cuda", "--dtype", "bfloat16", "--batch-docs", "2048",
            "--baseline-batch", "1000", "--baseline-docs", str(args.baseline_docs or GPU_BASELINE_DOCS), *common]
    return argv + (["--spark", "--spark-master", "local[2]"] if args.spark else [])


def summary(report: dict, wall_s: float) -> dict:
    """The numbers the check is for, taken from the bench's report."""
    rows = {r["name"]: r for r in report["results"]}
    keep = ("docs_per_min", "mfu", "padding_efficiency", "peak_memory_gib", "oom_docs", "oom_splits", "micro_batches")
    advice = report["gpu_sharing"]
    return {
        "device": report["device"],
        "rows": {name: {k: r.get(k) for k in keep} for name, r in rows.items()},
        "ratios": report["ratio_ours_over_baseline"],
        "tokenization_docs_per_s_per_core": advice["tokenization_docs_per_s_per_core"],
        "tokenizer_cores_per_gpu": advice["tokenizer_cores_to_keep_gpu_busy"],
        "wall_seconds_with_model_build": round(wall_s, 1),
        "within_time_limit": wall_s < TIME_LIMIT_S,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu-check needs a CUDA device (or --smoke for the CPU version)")
    from spark_jql.devtools.bench import cli

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spark_jql_gpu_check_") as tmp:
        cache = args.cache_dir or Path(tmp)
        bench_json = Path(tmp) / "bench.json"
        code = cli.main(bench_argv(args, bench_json, cache))
        report = json.loads(bench_json.read_text())
    wall = time.perf_counter() - start
    report["gpu_check"] = summary(report, wall)
    report["gpu_check"]["command"] = "python -m spark_jql.devtools.bench gpu-check " + " ".join(
        sys.argv[1:] if argv is None else argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report["gpu_check"], indent=1, default=str))
    return code


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    sys.exit(main())
