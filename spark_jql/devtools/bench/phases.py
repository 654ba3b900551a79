"""The benchmark phases: tokenization, model only, end to end, and Spark overhead."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time

import numpy as np

from spark_jql.devtools.bench.baseline import JqlBaseline
from spark_jql.devtools.bench.measure import ModelShape, PeakMemory, Result, _sync

log = logging.getLogger("spark_jql.devtools.bench")

@contextlib.contextmanager
def tokenizers_parallelism(on: bool):
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if on else "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _chunks(seq, size):
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def measure_tokenization(scorer, texts: list[str], batch_docs: int, parallel: bool, repeats: int = 1):
    with tokenizers_parallelism(parallel):
        scorer.tokenize(texts[: min(64, len(texts))])  # warm the thread pool
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            tokenized = [scorer.tokenize(c) for c in _chunks(texts, batch_docs)]
            best = min(best, time.perf_counter() - start)
    tokens = int(sum(t.lengths.sum() for t in tokenized))
    return best, tokens, tokenized


def _stats_delta(scorer, before: dict) -> dict:
    return {k: scorer.stats[k] - before[k] for k in ("docs", "tokens", "padded_tokens", "micro_batches", "oom_splits")}


def _computed_flops_plan(shape: ModelShape, lengths: np.ndarray, scorer) -> float:
    """FLOPs the scorer's plan runs: padded rows x longest, or (packed) each document's own tokens, with
    the exact CLS-only last layer when pooling is CLS."""
    total = 0.0
    packed = scorer.layout == "packed"
    cls_exact = packed and scorer.embedder.config.pooling == "cls"
    for b in scorer.plan(lengths):
        if packed:
            total += float(shape.flops(lengths[b], cls_exact).sum())
        else:
            total += len(b) * float(shape.flops(int(lengths[b[0]])))
    return total + shape.head_flops_per_doc * int((lengths > 0).sum())


def _computed_flops_chunks(shape: ModelShape, lengths: np.ndarray, size: int) -> float:
    total = 0.0
    for s in range(0, len(lengths), size):
        chunk = lengths[s : s + size]
        total += len(chunk) * float(shape.flops(int(chunk.max())))
    return total + shape.head_flops_per_doc * len(lengths)


def run_ours_model_only(scorer, tokenized_batches, shape, lengths) -> Result:
    before = dict(scorer.stats)
    with PeakMemory(scorer.device) as mem:
        start = time.perf_counter()
        for t in tokenized_batches:
            scorer._score_tokenized(t)
        _sync(scorer.device)
        seconds = time.perf_counter() - start
    d = _stats_delta(scorer, before)
    computed = sum(
        _computed_flops_plan(shape, t.lengths, scorer) for t in tokenized_batches
    )
    return Result(f"ours {scorer.layout}, model only", d["docs"], seconds, d["tokens"], d["padded_tokens"],
                  shape.model_flops(lengths), computed, mem.peak - mem.base, 0, d["micro_batches"],
                  {"oom_splits": d["oom_splits"], "layout": scorer.layout})


def run_ours_end_to_end(scorer, texts, batch_docs, shape, lengths) -> Result:
    before = dict(scorer.stats)
    with PeakMemory(scorer.device) as mem:
        start = time.perf_counter()
        n = 0
        for frame in scorer.score_batches(_chunks(texts, batch_docs)):
            n += len(frame)
        _sync(scorer.device)
        seconds = time.perf_counter() - start
    d = _stats_delta(scorer, before)
    return Result(f"ours {scorer.layout}, end to end", n, seconds, d["tokens"], d["padded_tokens"],
                  shape.model_flops(lengths), None, mem.peak - mem.base, 0, d["micro_batches"],
                  {"oom_splits": d["oom_splits"], "layout": scorer.layout})


def run_baseline(baseline: JqlBaseline, inputs, shape, lengths, end_to_end: bool) -> Result:
    baseline.oom_docs = 0
    baseline.computed_tokens = 0
    with PeakMemory(baseline.device) as mem:
        start = time.perf_counter()
        outs = baseline.score_texts(inputs) if end_to_end else baseline.score_ids(inputs)
        _sync(baseline.device)
        seconds = time.perf_counter() - start
    scored = sum(len(o) for o in outs if o is not None)
    name = "JQL baseline, " + ("end to end" if end_to_end else "model only")
    return Result(name, scored, seconds, int(lengths.sum()), baseline.computed_tokens, shape.model_flops(lengths),
                  _computed_flops_chunks(shape, lengths, baseline.batch_docs), mem.peak - mem.base, baseline.oom_docs,
                  extra={"layout": "padded (unsorted chunks)"})


def wait_for_spark_modules(timeout_s: float) -> None:
    import importlib

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            importlib.import_module("spark_jql.spark.api")
            importlib.import_module("spark_jql.spark.session")
            return
        except ImportError as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"--spark: spark_jql.spark.api / session are not importable: {err}") from None
            log.info("waiting for spark_jql.spark modules (%s)", err)
            time.sleep(30)


def measure_spark(scorer_config, texts: list[str], master: str, arrow_batch: int, repeats: int, wait_s: float) -> dict:
    """docs/s through the Spark UDF vs the scorer alone, same data, model, cores and batch size."""
    import torch

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    wait_for_spark_modules(wait_s)
    from spark_jql.scoring.scorer import Scorer
    from spark_jql.spark.api import annotate
    from spark_jql.spark.session import build_session

    cores = _local_cores(master)
    import pandas as pd

    spark = build_session(master=master, app_name="spark_jql-bench",
                          conf={"spark.sql.shuffle.partitions": str(cores), "spark.ui.enabled": "false"})
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)  # the scorer alone gets the cores Spark's tasks get
    try:
        scorer = Scorer(scorer_config, device="cpu")
        list(scorer.score_batches(_chunks(texts[:64], arrow_batch)))  # warm-up
        pdf = pd.DataFrame({"id": np.arange(len(texts)), "text": texts})
        df = spark.createDataFrame(pdf).repartition(cores).cache()
        df.count()

        def spark_run() -> float:
            start = time.perf_counter()
            annotate(df, scorer_config, arrow_batch_size=arrow_batch).write.format("noop").mode("overwrite").save()
            return time.perf_counter() - start

        def alone_run() -> float:
            start = time.perf_counter()
            count = sum(len(f) for f in scorer.score_batches(_chunks(texts, arrow_batch)))
            assert count == len(texts)
            return time.perf_counter() - start

        cold = spark_run()  # also loads the model once in each Python worker
        alones, runs = [], []
        for _ in range(max(1, repeats)):  # interleaved, so a change in machine load hits both
            alones.append(alone_run())
            runs.append(spark_run())
        df.unpersist()
    finally:
        torch.set_num_threads(threads)
        spark.stop()
    n = len(texts)
    alone = min(alones)
    runs = [cold] + runs
    warm = min(runs[1:])
    return {
        "master": master,
        "docs": n,
        "arrow_batch_size": arrow_batch,
        "scorer_alone_s": round(alone, 3),
        "scorer_alone_docs_per_s": round(n / alone, 2),
        "scorer_alone_torch_threads": cores,
        "spark_cold_s": round(runs[0], 3),
        "spark_warm_s": round(warm, 3),
        "spark_warm_docs_per_s": round(n / warm, 2),
        "ratio_spark_over_scorer_warm": round(alone / warm, 4),
        "ratio_spark_over_scorer_cold": round(alone / runs[0], 4),
        "ms_per_doc_scorer_alone": round(1000 * alone / n, 3),
        "scorer_alone_runs_s": [round(x, 2) for x in alones],
        "spark_runs_s": [round(x, 2) for x in runs],
    }


def _local_cores(master: str) -> int:
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1]
        return os.cpu_count() or 1 if inner == "*" else int(inner.split(",")[0])
    return 1
