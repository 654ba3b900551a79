"""The stage skeleton: a stage says what it is; one road runs every stage with the same guarantees.

Like datatrove's ``PipelineStep`` (a step only processes documents; the executor owns sharding and
completion) and NeMo Curator's ``ProcessingStage`` (``inputs()``/``outputs()`` declared, resources apart
from logic), a :class:`UnitStage` declares

* ``adds``: the columns it writes (an input column with such a name is refused, never overwritten);
* ``fingerprint()``: what decides its output (:mod:`spark_jql.fingerprint`: settings minus runtime ones,
  plus model and prompt files by content);
* ``check(schema)``: its driver-side checks, before any task;
* ``transform(rows, unit)``: its work on one unit's good rows;
* ``before_start_over(output, why)`` (optional): refuse to delete a previous output that cannot be resumed.

:func:`run_stage` owns the rest, so a stage written on the skeleton gets it without writing it: reading
files or tables in every format with the text column and the bad-file policy, work units and the resume
manifest (``io.mode``, ``io.resume``, ``io.incremental``), planned partitions and overlapping units
(spark/runner.py), atomic unit commits, row accounting (rows in = rows written + counted skips),
progress and the summary fields every stage reports.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_jql import interrupts
from spark_jql.config import JobConfig
from spark_jql.errors import AccountingError, InputError, Interrupted
from spark_jql.fingerprint import Fingerprint
from spark_jql.spark.estimate import estimated_rows
from spark_jql.spark.inputs import Source, check_reserved, find_bad_files, type_clashes
from spark_jql.spark.lease import OutputLease
from spark_jql.spark.preflight import output_folder
from spark_jql.spark.progress import ScoringProgress
from spark_jql.spark.runner import UnitRunner, cluster_slots, readable_files, session_settings, split_settings
from spark_jql.spark.units import UnitPlan, group_files
from spark_jql.spark.workers import check_worker_python

log = logging.getLogger(__name__)


class UnitStage(ABC):
    """One Spark stage that writes a unit-committed output; see the module docstring."""

    name: str = "stage"
    adds: list[str] = []
    reads_text: bool = True  # False: the stage reads another column (heads-only rescoring reads embeddings)

    @abstractmethod
    def fingerprint(self) -> Fingerprint:
        """What decides this stage's output."""

    def check(self, spark: SparkSession, schema: StructType, source: Source) -> None:
        """Driver-side checks of the input schema and the stage's own files, before any task."""

    @abstractmethod
    def transform(self, rows: DataFrame, unit: int) -> DataFrame:
        """The stage's work on one unit's good rows (every input column)."""

    def buckets(self, spark: SparkSession, source: Source, schema: StructType, groups: int) -> int:
        """Units per file group (rows split by a hash); 1 unless a stage needs smaller units."""
        return 1

    def after_unit(self, spark: SparkSession, path: str, unit: int) -> dict:
        """Checks of a written unit before it is committed; what they return goes into its marker."""
        return {}

    def before_start_over(self, output: str, why: str) -> None:
        """Called when ``output`` holds a previous run that cannot be resumed (``why``), before anything is deleted
        or ``io.mode=error`` refuses: a stage whose outputs are expensive to remake raises here to refuse instead."""

    def translate(self, err: Exception) -> Exception | None:
        """A stage's own error out of Spark's exception chain (None: not one of its own)."""
        return None


def input_schema(spark: SparkSession, source: Source, io, text_column: str, added: list[str]) -> StructType:
    """The schema of every input, checked for reserved names; with ``on_bad_file=skip`` unreadable files are left out."""
    if not source.is_files:
        found = source.schema()
    else:
        paths = [f.path for f in source.files]
        try:
            found = source.schema(paths)
        except Exception:
            # Column types that clash between parquet files (footers only), else files that cannot be read through.
            bad = (type_clashes(spark, paths) if source.fmt == "parquet" else []) or find_bad_files(
                spark, paths, source.fmt, None, text_column, source.base)
            if not bad:
                raise
            good = readable_files(paths, bad, io.on_bad_file)
            if not good:
                raise InputError(f"no readable input file among {len(paths)}: {bad[:3]}") from None
            found = source.schema(good)
            source.skipped.update(bad)  # the units leave them out, with this reason in the summary
    check_reserved(found.names, added, f"the input ({source.label})")
    return found


def run_stage(spark: SparkSession, cfg: JobConfig, stage: UnitStage, output: str, before_writing=lambda: None,
              lease: bool = True) -> dict:
    """Run ``stage`` over ``cfg.io``'s input into unit directories under ``output``; the common summary fields.

    With ``lease`` the stage holds the output lease beside ``output`` (spark/lease.py) from its checks to its end:
    a second run on the same output is refused naming this one."""
    start = time.perf_counter()
    output_folder(spark, output, "output")
    source = Source(spark, cfg.io, cfg.columns.text)
    schema = input_schema(spark, source, cfg.io, cfg.columns.text, stage.adds)
    stage.check(spark, schema, source)
    with OutputLease(spark, output, stage.name, beside=True) if lease else nullcontext():
        return _run(spark, cfg, stage, output, source, schema, before_writing, start)


def _run(spark, cfg, stage, output, source, schema, before_writing, start) -> dict:
    groups = len(group_files(source.files, cfg.io.unit_bytes, cfg.io.files_per_unit))
    buckets = stage.buckets(spark, source, schema, groups)
    plan = UnitPlan(spark, output, source.files, stage.fingerprint(), cfg.io.unit_bytes, cfg.io.files_per_unit, buckets)
    plan.prepare(resume=cfg.io.resume, mode=cfg.io.mode, incremental=cfg.io.incremental, before_writing=before_writing,
                 before_start_over=lambda why: stage.before_start_over(output, why))
    runner = UnitRunner(spark, plan, source, schema, stage.transform, text_column=cfg.columns.text,
                        on_bad_file=cfg.io.on_bad_file, in_flight=cfg.io.units_in_flight,
                        check_text_column=stage.reads_text, after_unit=stage.after_unit, translate=stage.translate)
    pending = plan.pending()
    settings = split_settings(cluster_slots(spark, cfg.spark.slots), cfg.spark.partitions_per_slot, cfg.spark.arrow_batch_size)
    work_start = time.perf_counter()
    todo = {p for u in pending for p in plan.files(u)}  # progress total: cheap estimate, no counting pass
    total = estimated_rows([f for f in source.files if f.path in todo], source.fmt) if source.is_files else None
    try:
        check_worker_python(spark)  # its one-row job before the progress starts counting the stage's jobs
        with session_settings(spark, settings), ScoringProgress(spark, total=total, label=stage.name):
            runner.run(pending)
    except (KeyboardInterrupt, Exception) as err:  # Ctrl-C / SIGTERM: what is committed; the rerun resumes there
        signum = getattr(err, "signum", 2) if isinstance(err, KeyboardInterrupt) else interrupts.received()
        if signum is None:  # a real error, not a signal surfacing as one (see interrupts.received)
            raise
        left = [u for u in pending if u not in runner.committed]
        done = len(plan.units) - len(left)
        resume = f"; the rerun resumes from unit {left[0]}" if left else ""
        raise Interrupted(signum, f"{stage.name}: {done} of {len(plan.units)} units of {output} "
                                  f"committed{resume}") from None
    work_seconds = time.perf_counter() - work_start
    markers = plan.markers()
    input_rows = sum(m["input_rows"] for m in markers)
    written = spark.read.option("mergeSchema", "true").parquet(output)  # an incremental unit may bring a new column
    rows_out = written.count()
    if rows_out != input_rows:
        raise AccountingError(f"{stage.name} read {input_rows} rows but {output} holds {rows_out}")
    skipped_records = {f: n for m in markers for f, n in m.get("skipped_records", {}).items()}
    return {
        "frame": written,
        "markers": markers,
        "summary": {
            "input": cfg.io.input_table or cfg.io.input,
            "input_version": source.version,
            "output": output,
            "input_files": len(source.files),
            "input_files_added": plan.added_files,
            "units": len(markers),
            "units_resumed": plan.resumed,
            "skipped_files": [f for m in markers for f in m["skipped_files"]],
            "skipped_records": sum(skipped_records.values()),
            "skipped_records_by_file": skipped_records,
            "input_rows": input_rows,
            "rows": rows_out,
            "seconds": round(time.perf_counter() - start, 2),
            "processed_now": runner.scored_rows,
            "work_seconds": round(work_seconds, 2),
            "docs_per_second": round(runner.scored_rows / work_seconds, 2) if work_seconds and runner.scored_rows else None,
        },
    }
