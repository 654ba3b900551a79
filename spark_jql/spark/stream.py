"""Structured Streaming: score a stream and split it by frozen thresholds into filtered/ and dropped/, exactly once.

Thresholds come from a batch run (``thresholds.json``): a stream has no "all the scores" to take quantiles of,
so it applies the ones a representative batch computed. Each micro-batch is scored once (persisted), marked
and written to both outputs by ``foreachBatch``, idempotently, so a batch that Spark replays after a kill
(written, but not yet committed in the checkpoint) replaces itself instead of adding its documents again:

* Delta outputs (paths or tables) append with Delta's idempotent-write options ``txnAppId`` (one per checkpoint)
  and ``txnVersion`` (the batch id): Delta skips a version it has already committed;
* file outputs (parquet, JSON, ...) write each batch into its own folder ``jql_batch=N`` with mode overwrite.

Every batch's counts (rows in, kept, dropped) land in ``<checkpoint>/jql_batches/batch-N.json``; ``kept +
dropped = rows in`` is checked before that marker is written.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pyspark.sql import DataFrame, SparkSession

from spark_jql.config import JobConfig
from spark_jql.errors import AccountingError, InputError
from spark_jql.layout import OutputLayout
from spark_jql.paths import join
from spark_jql.spark import preflight
from spark_jql.spark.api import KEEP, annotate, mark_rows, split_marked
from spark_jql.spark.inputs import FILE_FORMATS, detect_format, file_schema, input_files, normalise
from spark_jql.spark.job import output_columns
from spark_jql.spark.storage import exists, read_texts, write_text
from spark_jql.thresholds import Thresholds

log = logging.getLogger(__name__)

BATCH_COLUMN = "jql_batch"  # file outputs: one folder per micro-batch, replaced as a whole on replay
BATCHES = "jql_batches"  # under the checkpoint: one JSON of counts per committed micro-batch
STREAM_CHECKPOINT = "_jql_stream_checkpoint"  # the default checkpoint, under io.output


def default_checkpoint(config: JobConfig) -> str:
    return join(config.io.output, STREAM_CHECKPOINT)


def read_stream(spark: SparkSession, config: JobConfig, max_files_per_trigger: int | None = None) -> DataFrame:
    """The input as a stream: a Delta table (path or io.input_table), or one folder of JSON-lines/parquet files."""
    io = config.io
    fmt = io.input_format
    reader = spark.readStream
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
    if io.input_table is not None:
        return reader.format(fmt if fmt != "auto" else "delta").table(io.input_table)
    if len(io.input) != 1:
        raise InputError(f"stream reads one folder (or one table): io.input names {len(io.input)} paths {io.input[:3]}")
    folder = normalise(io.input[0]).rstrip("/")
    if fmt not in FILE_FORMATS and fmt != "auto":
        return reader.format(fmt).load(folder)
    files = [f.path for f in input_files(spark, [folder])]  # a missing or empty folder is the usual one line
    fmt = detect_format(files) if fmt == "auto" else fmt
    found = file_schema(spark, files, fmt, config.columns.text)  # file streams need their schema up front
    if fmt == "json":  # a malformed line stops the stream naming it (no skip policy: a stream has no units)
        reader = reader.option("mode", "FAILFAST")
    return reader.schema(found).format(fmt).load(folder)


class BatchWriter:
    """``foreachBatch``'s function: score a micro-batch once, split it, write both outputs idempotently, count."""

    def __init__(self, config: JobConfig, thresholds: Thresholds, checkpoint: str):
        self.config = config
        self.thresholds = thresholds
        self.checkpoint = checkpoint
        self.app_id = "spark_jql-" + hashlib.sha256(checkpoint.encode()).hexdigest()[:16]  # stable across restarts

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        cfg = self.config
        scored = annotate(batch, cfg.scorer, cfg.columns.text, cfg.spark.arrow_batch_size).persist()
        try:
            rows = scored.count()  # scores every document once; the writes below read the persisted rows
            marked = mark_rows(scored, self.thresholds, cfg.filter.quantile, cfg.columns)
            kept, dropped = split_marked(marked, self.thresholds.score_column)
            counts = {bool(r[KEEP]): r["count"] for r in marked.groupBy(KEEP).count().collect()}
            self._write(kept, "filtered", batch_id)
            if cfg.filter.write_dropped:
                self._write(dropped, "dropped", batch_id)
        finally:
            scored.unpersist()
        kept_rows, dropped_rows = counts.get(True, 0), counts.get(False, 0)
        if kept_rows + dropped_rows != rows:
            raise AccountingError(f"stream batch {batch_id}: kept {kept_rows} + dropped {dropped_rows} != rows {rows}")
        marker = {"batch": batch_id, "rows": rows, "kept_rows": kept_rows, "dropped_rows": dropped_rows}
        write_text(batch.sparkSession, join(self.checkpoint, BATCHES, f"batch-{batch_id:08d}.json"), json.dumps(marker))
        log.info("stream batch %d: %d rows, kept %d", batch_id, rows, kept_rows)

    def _write(self, df: DataFrame, what: str, batch_id: int) -> None:
        io = self.config.io
        folder = OutputLayout(io.output).job_paths()[what]
        writer = output_columns(df, io.output_columns, what).write.format(io.output_format)
        if io.partition_by_language:
            writer = writer.partitionBy(*self.config.columns.language)
        table = getattr(io.output_tables, what)
        if io.output_format == "delta":
            writer = writer.mode("append").option("txnAppId", f"{self.app_id}-{what}").option("txnVersion", batch_id)
            if table is not None:
                writer.saveAsTable(table)
            else:
                writer.save(folder)
            return
        writer.mode("overwrite").save(join(folder, f"{BATCH_COLUMN}={batch_id:08d}"))


def check_stream(spark: SparkSession, config: JobConfig, stream: DataFrame, thresholds: str | None = None) -> Thresholds:
    """Everything a stream can be refused for, on the driver before it starts: outputs, columns, models, thresholds."""
    io = config.io
    paths = OutputLayout(io.output).job_paths()
    if any(t is not None for t in (io.output_tables.filtered, io.output_tables.dropped)) and io.output_format != "delta":
        raise InputError(f"stream writes output tables only as Delta (idempotent appends); io.output_format is "
                         f"{io.output_format!r}: set io.output_format=delta or write files (no io.output_tables)")
    if io.output_format != "delta":
        for folder in (paths["filtered"], paths["dropped"]):
            if exists(spark, join(folder, "_SUCCESS")):  # a batch write's marker; a stream's are one level down
                raise InputError(f"{folder} holds a batch run's output: a stream adds {BATCH_COLUMN}=N folders beside "
                                 "it and the two would mix; give the stream its own io.output")
    preflight.annotate(spark, config, stream.schema)
    return preflight.thresholds_file(spark, thresholds or paths["thresholds"], config)


def start_stream(spark: SparkSession, config: JobConfig, checkpoint: str | None = None, available_now: bool = True,
                 processing_time: str | None = None, max_files_per_trigger: int | None = None,
                 thresholds: str | None = None):
    """Start the scoring stream; returns the StreamingQuery (``available_now``: it stops when the input is done).

    ``thresholds``: the thresholds.json to apply (default ``<io.output>/thresholds.json``)."""
    checkpoint = checkpoint or default_checkpoint(config)
    stream = read_stream(spark, config, max_files_per_trigger)
    thresholds = check_stream(spark, config, stream, thresholds)
    writer = stream.writeStream.foreachBatch(BatchWriter(config, thresholds, checkpoint))
    writer = writer.option("checkpointLocation", checkpoint).queryName("spark_jql_stream")
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(processingTime=processing_time or "1 minute")
    return writer.start()


def stream_summary(spark: SparkSession, checkpoint: str) -> dict:
    """The counts of every committed micro-batch under ``checkpoint`` (all runs of this stream)."""
    batches = [json.loads(t) for t in read_texts(spark, join(checkpoint, BATCHES)).values()]
    total = {k: sum(b[k] for b in batches) for k in ("rows", "kept_rows", "dropped_rows")}
    return {"checkpoint": checkpoint, "batches": len(batches), **total}
