"""Heads-only rescoring vs full scoring: docs/s on the same documents, same Spark session, one run.

    python -m spark_jql.devtools.bench.rescore --arch gte-small --docs 600

Full scoring is ``annotate`` (tokenize + encoder + heads) keeping bfloat16 embeddings; rescoring is
``score_embeddings`` over what it wrote (heads only, no encoder). Both write parquet. Each phase is
warmed up once on a few documents first, so model and head loading are not timed. The encoder has
random weights of a named architecture (``--arch``; see ``spark_jql.devtools.tiny_models``) and the
heads have JQL's shape (``Linear(d, 1000) -> ReLU -> Linear(1000, 1)``, three of them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m spark_jql.devtools.bench.rescore", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="gte-small", help="encoder architecture (random weights)")
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--max-length", type=int, default=8192)
    p.add_argument("--corpus", type=Path, default=SHARED / "fineweb2_spa_Latn_600.jsonl")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--storage", default="bfloat16", choices=("float16", "bfloat16"))
    args = p.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    from spark_jql.config import ScorerConfig
    from spark_jql.devtools.tiny_models import (
        ARCHITECTURES,
        JQL_HEAD_NAMES,
        build_encoder,
        build_heads,
    )
    from spark_jql.spark.api import annotate, score_embeddings
    from spark_jql.spark.session import build_session

    work = Path(tempfile.mkdtemp(prefix="jql_rescore_"))
    model = build_encoder(work / "encoder", args.arch)
    heads = build_heads(work / "heads", ARCHITECTURES[args.arch]["hidden_size"], JQL_HEAD_NAMES, hidden_dim=1000)
    config = ScorerConfig.model_validate({
        "embedder": {"model": str(model), "max_length": args.max_length, "device": "cpu"},
        "heads": [{"name": n, "path": str(h)} for n, h in heads.items()],
        "store_embedding": args.storage,
    })
    texts = [json.loads(line)["text"] for line in args.corpus.read_text().splitlines()][: args.docs]
    spark = build_session(master=args.master, app_name="jql-rescore-bench", conf={"spark.sql.shuffle.partitions": "4"})
    frame = spark.createDataFrame([(str(i), t) for i, t in enumerate(texts)], "id string, text string").repartition(2)
    frame.cache().count()
    warm = frame.limit(8)
    annotate(warm, config).write.mode("overwrite").parquet(str(work / "warm_scored"))
    score_embeddings(spark.read.parquet(str(work / "warm_scored")), config).write.mode("overwrite").parquet(str(work / "warm_rescored"))

    full = _timed(lambda: annotate(frame, config).write.mode("overwrite").parquet(str(work / "scored")))
    stored = spark.read.parquet(str(work / "scored"))
    rescore = _timed(lambda: score_embeddings(stored, config).write.mode("overwrite").parquet(str(work / "rescored")))
    n = stored.count()
    result = {
        "docs": n, "arch": args.arch, "dim": ARCHITECTURES[args.arch]["hidden_size"], "master": args.master,
        "storage": args.storage, "full_seconds": round(full, 2), "full_docs_per_s": round(n / full, 1),
        "heads_only_seconds": round(rescore, 2), "heads_only_docs_per_s": round(n / rescore, 1),
        "speedup": round(full / rescore, 1),
    }
    print(json.dumps(result, indent=2))
    spark.stop()
    return result


if __name__ == "__main__":
    main()
