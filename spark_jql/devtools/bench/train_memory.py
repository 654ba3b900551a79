"""Head training in bounded memory: generate an embed-shaped parquet set on disk, train on it, report peak RSS.

    python -m spark_jql.devtools.bench.train_memory --rows 2000000 --dim 768 --dir /tmp/emb2m

Generation and training run in separate child processes so each one's peak RSS is its own
(``ru_maxrss`` of the training child is the number that matters: it must stay far below the
data set's size). Labels are a noisy function of the vectors, so the head has something to
learn. A benchmark: run it by hand, never from the tests; results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

LANGUAGES = ["deu", "fra", "spa", "ita", "pol"]


def generate(out: Path, rows: int, dim: int, files: int, chunk: int = 50_000, seed: int = 0) -> None:
    """``files`` parquet files of id, language, score and a list<float> embedding, written chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim).astype(np.float32)
    per_file = -(-rows // files)
    written = 0
    for f in range(files):
        with pq.ParquetWriter(out / f"part-{f:05d}.parquet", pa.schema([
            ("id", pa.string()), ("language", pa.string()), ("score", pa.float64()),
            ("embedding", pa.list_(pa.float32()))])) as writer:
            left = min(per_file, rows - written)
            while left > 0:
                n = min(chunk, left)
                x = rng.normal(size=(n, dim)).astype(np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                score = np.clip(np.rint((x @ w) * 1.5 + 2.5 + rng.normal(0, 0.5, n)), 0, 5)
                emb = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(x.ravel()))
                writer.write_table(pa.table({
                    "id": pa.array([str(written + i) for i in range(n)]),
                    "language": pa.array([LANGUAGES[(written + i) % len(LANGUAGES)] for i in range(n)]),
                    "score": score, "embedding": emb}), row_group_size=n)
                written += n
                left -= n


def train(data: Path, out: Path, overrides: list[str]) -> dict:
    import torch

    from spark_jql.config import TrainConfig, load_config
    from spark_jql.method.train import train_from_parquet

    cfg = load_config(None, overrides, model=TrainConfig)
    start = time.perf_counter()
    report = train_from_parquet(data, out, {"edu": "score"}, cfg)
    head = report["heads"]["edu"]
    return {
        "rows": report["documents"]["train"], "dim": report["dim"], "config": overrides,
        "threads": torch.get_num_threads(),
        "seconds_total": round(time.perf_counter() - start, 1),
        "epoch_seconds": [h["seconds"] for h in head["history"]],
        "val_spearman": head["validation"]["spearman"] if head["validation"] else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--dir", type=Path, required=True, help="where the set is (generated if missing)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="TrainConfig override (default: epochs=1 val_fraction=0.05)")
    parser.add_argument("--child", choices=["generate", "train"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = args.dir / "embeddings"
    overrides = args.overrides or ["epochs=1", "val_fraction=0.05"]
    if args.child == "generate":
        start = time.perf_counter()
        generate(data, args.rows, args.dim, args.files)
        print(json.dumps({"generated_rows": args.rows, "seconds": round(time.perf_counter() - start, 1),
                          "bytes_on_disk": sum(p.stat().st_size for p in data.glob("*.parquet")),
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
        return
    if args.child == "train":
        print(json.dumps(train(data, args.dir / "heads", overrides)))
        return
    me = [sys.executable, "-m", "spark_jql.devtools.bench.train_memory", "--rows", str(args.rows), "--dim", str(args.dim),
          "--files", str(args.files), "--dir", str(args.dir)] + [a for o in overrides for a in ("--set", o)]
    env = dict(os.environ)
    if not data.exists():
        subprocess.run(me + ["--child", "generate"], check=True, env=env)
    subprocess.run(me + ["--child", "train"], check=True, env=env)


if __name__ == "__main__":
    main()
