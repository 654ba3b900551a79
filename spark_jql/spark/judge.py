"""LLM annotation as a DataFrame transformation: one set of result columns per judge.

Each judge adds ``judge_<name>`` (int 0-5, null when there is no score),
``judge_<name>_raw`` (the answer), ``judge_<name>_error`` (null, or why there is no
score) and ``judge_<name>_attempts``. Failures are rows, not task failures, so one
bad document or a server hiccup never fails the job.

Concurrency: each Python worker (one per task slot) keeps at most
``JudgeConfig.concurrency`` requests in flight, so a server sees at most
``concurrency x running tasks``; bound the tasks with ``repartition(n)`` or the
executor count. Results are not cached by Spark: write them once (the ``judge``
stage does) and read them back, or a recomputed plan would ask the server again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from spark_jql.config import JudgeConfig, JudgeEndpoint
from spark_jql.errors import InputError
from spark_jql.method.judge import ChatClient, load_prompt
from spark_jql.spark.api import quoted, require_text_column

RESULT_SCHEMA = StructType([
    StructField("score", IntegerType()),
    StructField("raw", StringType()),
    StructField("error", StringType()),
    StructField("attempts", IntegerType()),
])


def judge_columns(name: str) -> dict[str, str]:
    """Struct field -> output column for one judge."""
    base = f"judge_{name}"
    return {"score": base, "raw": f"{base}_raw", "error": f"{base}_error", "attempts": f"{base}_attempts"}


def make_judge_udf(endpoint: JudgeEndpoint, config: JudgeConfig, template: str):
    """A pandas UDF ``text -> struct<score, raw, error, attempts>`` for one judge."""

    @pandas_udf(RESULT_SCHEMA)
    def judge_udf(texts: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from concurrent.futures import ThreadPoolExecutor

        client = ChatClient(endpoint, config)
        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="jql-judge") as pool:
            for batch in texts:
                results = list(pool.map(lambda t: client.judge(t, template), batch.tolist()))
                yield pd.DataFrame({
                    "score": pd.array([r.score for r in results], dtype="Int32"),
                    "raw": [r.raw for r in results],
                    "error": [r.error for r in results],
                    "attempts": pd.array([r.attempts for r in results], dtype="Int32"),
                })

    return judge_udf


def judge(df: DataFrame, config: JudgeConfig, text_column: str = "text", arrow_batch_size: int | None = None) -> DataFrame:
    """Keep every input column and row; add the four result columns of every judge."""
    require_text_column(df, text_column)
    template = load_prompt(config.prompt_file)  # read on the driver: executors need not see the file
    added = {e.name: judge_columns(e.name) for e in config.judges}
    clash = [c for cols in added.values() for c in cols.values() if c in df.columns]
    if clash:
        raise InputError(f"input already has judge column(s) {clash}; drop or rename them first")
    if arrow_batch_size is not None:
        df.sparkSession.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch_size))
    structs = [make_judge_udf(e, config, template)(quoted(text_column)).alias(f"__jql_judge_{e.name}") for e in config.judges]
    wide = df.select("*", *structs)
    out = [quoted(c) for c in df.columns]
    for e in config.judges:
        out += [F.col(f"__jql_judge_{e.name}").getField(f).alias(c) for f, c in added[e.name].items()]
    return wide.select(*out)


def write_judgements(cfg, judge_cfg: JudgeConfig, output: str | None = None, partitions: int | None = None) -> dict:
    """The ``judge`` stage: read io.input, write every judge's columns as parquet, summarise scores and errors."""
    from spark_jql.spark.job import AccountingError
    from spark_jql.spark import preflight
    from spark_jql.spark.io import join_path, read_input

    from spark_jql.spark.session import session_for

    spark = session_for(cfg)
    out = output or join_path(cfg.io.output, "judged")
    source = read_input(spark, cfg.io.input, cfg.io.input_format)
    preflight.text_stage(source.schema, cfg.columns.text)
    if partitions:
        source = source.repartition(partitions)
    rows_in = source.count()
    judge(source, judge_cfg, cfg.columns.text, cfg.spark.arrow_batch_size).write.mode(cfg.io.mode).parquet(out)
    written = spark.read.parquet(out)
    rows_out = written.count()
    if rows_out != rows_in:
        raise AccountingError(f"judge read {rows_in} rows but wrote {rows_out} to {out}")
    summary = {"output": out, "rows": rows_out, "judges": {}}
    for e in judge_cfg.judges:
        cols = judge_columns(e.name)
        kind = F.substring_index(cols["error"], ":", 1).alias("error")
        counts = written.groupBy(F.col(cols["score"]).alias("score"), kind).count().collect()
        scores, errors = {}, {}
        for r in counts:
            scores[str(r["score"])] = scores.get(str(r["score"]), 0) + r["count"]
            if r["error"] is not None:
                errors[r["error"]] = errors.get(r["error"], 0) + r["count"]
        summary["judges"][e.name] = {"scores": dict(sorted(scores.items())), "errors": errors}
    return summary
