"""Running a stage's units so that the cluster never waits, and nothing is lost, duplicated or mixed.

Three things keep every slot busy:

* **Partitions planned by work.** Spark packs small files into one partition by counting a 4 MB open
  cost per file and sorts files by size first, so a partition may hold 40x the text of another. While a
  stage runs, the file-split settings are set so that a unit splits into about ``slots x
  spark.partitions_per_slot`` partitions of equal bytes (small files packed by bytes, large ones split:
  uncompressed JSON lines by byte range, parquet by row group), then restored. A unit's smallest files,
  up to a quarter of its bytes, are read as a scan of their own: Spark plans each scan's partitions
  separately, so that last quarter comes in partitions a third the size of the others, scheduled last,
  and the slots finish together instead of idling behind the last big partitions.
* **Units that overlap.** Up to ``io.units_in_flight`` units run at once from driver threads. Spark's
  FIFO scheduler gives free slots to the next job's tasks, so unit k+1 starts while unit k's last
  partitions drain. Each unit is still written by Spark's committer (all of it or nothing) and marked
  done only afterwards, so a killed run resumes exactly.
* **One read of the input per unit.** Row, bad-record and text counts ride along with the scoring pass
  (``DataFrame.observe``); the check that every row was written reads only the parquet footers. A
  second pass happens only on an error path (to name the bad file and line) or where the session cannot
  observe (Spark Connect before 4.0).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jql.errors import AccountingError, InputError, SparkJQLError
from spark_jql.spark.api import quoted
from spark_jql.spark.inputs import BAD, FILE, Source, find_bad_files, first_bad_line, normalise
from spark_jql.spark.session import is_connect
from spark_jql.spark.units import UnitPlan

log = logging.getLogger(__name__)

OPEN_COST_BYTES = 8 * 1024  # what opening a file costs, in bytes of reading (Spark's default: 4 MB)
LAST_WAVE_SHARE = 0.25  # of a unit's bytes, read last in smaller partitions
_BAD_MARK = "spark_jql bad record in "


@dataclass
class UnitOutcome:
    """What one unit read and wrote; recorded in its commit marker."""

    input_rows: int
    skipped_records: dict[str, int] = field(default_factory=dict)
    skipped_files: list[dict] = field(default_factory=list)

    def marker(self) -> dict:
        return {"input_rows": self.input_rows, "skipped_files": self.skipped_files,
                "skipped_records": self.skipped_records}


def cancel_jobs(spark: SparkSession) -> None:
    """Cancel every running Spark job of this session (classic or Connect); never raises."""
    try:
        if is_connect(spark):
            spark.interruptAll()
        else:
            spark.sparkContext.cancelAllJobs()
    except Exception as err:  # the JVM or server may already be going away
        log.debug("cancelling the running jobs failed: %s", err)


def readable_files(paths: list[str], bad: list[tuple[str, str]], on_bad_file: str) -> list[str]:
    """``io.on_bad_file=fail``: stop naming the first unreadable file; ``skip``: the others, with a warning."""
    if on_bad_file == "fail":
        path, reason = bad[0]
        raise InputError(f"cannot read input file {path}: {reason} (set io.on_bad_file=skip to skip such files)")
    log.warning("skipping %d unreadable file(s): %s", len(bad), [p for p, _ in bad])
    return [f for f in paths if f not in {p for p, _ in bad}]


def cluster_slots(spark: SparkSession, configured: int | None = None) -> int:
    """Task slots that work at once: the setting, else GPUs x tasks per GPU, else the default parallelism."""
    if configured:
        return configured

    def conf(key: str) -> str | None:
        try:
            return spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a static setting a Connect server will not show
            return None

    per_task, per_executor, executors = (conf(f"spark.{k}") for k in (
        "task.resource.gpu.amount", "executor.resource.gpu.amount", "executor.instances"))
    try:
        if per_task and per_executor and executors:
            return max(1, int(int(executors) * float(per_executor) / float(per_task)))
    except ValueError:
        pass
    from spark_jql.spark.session import is_connect

    if not is_connect(spark):
        cpus = int(conf("spark.task.cpus") or 1)
        return max(1, spark.sparkContext.defaultParallelism // cpus)
    parallelism = conf("spark.default.parallelism")
    if parallelism and parallelism.isdigit():
        return int(parallelism)
    master = conf("spark.master") or ""
    if master.startswith("local["):
        n = master[len("local["):].split(",")[0].rstrip("]")
        if n.isdigit():
            return int(n)
    return 8


@contextmanager
def session_settings(spark: SparkSession, settings: dict[str, str]):
    """Set SQL settings for the duration of a stage and put the caller's values back afterwards."""
    before = {}
    for key, value in settings.items():
        before[key] = spark.conf.get(key, None)
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def split_settings(slots: int, partitions_per_slot: int, arrow_batch: int | None) -> dict[str, str]:
    """File-split settings that cut each unit into about ``slots x partitions_per_slot`` parts of equal bytes."""
    parts = max(1, slots * partitions_per_slot)
    settings = {
        "spark.sql.files.minPartitionNum": str(parts),
        "spark.sql.files.openCostInBytes": str(OPEN_COST_BYTES),
    }  # Spark splits at min(maxPartitionBytes, max(open cost, bytes / minPartitionNum)): equal bytes per part
    if arrow_batch is not None:
        settings["spark.sql.execution.arrow.maxRecordsPerBatch"] = str(arrow_batch)
    return settings


def last_wave(paths: list[str], sizes: dict[str, int], share: float = LAST_WAVE_SHARE) -> list[list[str]]:
    """``[body, tail]``: the smallest files, up to ``share`` of the bytes, apart (each file once); or ``[paths]``.

    The caller reads each part as its own scan and unions them, body first. Spark sizes each scan's
    partitions from that scan's bytes, so the tail's partitions are smaller and, scheduled last, even
    out the end of the unit (longest work first, short work last, as in guided self-scheduling).
    """
    total = sum(sizes.get(p, 0) for p in paths)
    tail, tail_bytes = [], 0
    for path in sorted(paths, key=lambda p: (sizes.get(p, 0), p)):
        size = sizes.get(path, 0)
        if tail_bytes + size > share * total:
            break
        tail.append(path)
        tail_bytes += size
    if not tail or len(tail) == len(paths) or not tail_bytes:
        return [paths]
    chosen = set(tail)
    return [[p for p in paths if p not in chosen], [p for p in paths if p in chosen]]


class _Counts:
    """Rows, bad records and text values of a unit's input, counted by the scoring pass itself."""

    def __init__(self, rows: DataFrame, text_column: str):
        from pyspark.sql import Observation

        text = quoted(text_column) if text_column in rows.columns else F.lit(None)
        self._metrics = [F.count(F.lit(1)).alias("rows"), F.count(F.col(BAD)).alias("bad"), F.count(text).alias("text")]
        self._rows = rows
        self._observation = None
        try:
            self._observation = Observation(f"jql_{uuid.uuid4().hex[:12]}")
            self.frame = rows.observe(self._observation, *self._metrics)
        except Exception:  # noqa: BLE001 - Spark Connect before 4.0: count in a pass of its own
            self._observation = None
            self.frame = rows

    def get(self) -> dict[str, int]:
        if self._observation is not None:
            found = self._observation.get
            return {k: int(found[k]) for k in ("rows", "bad", "text")}
        row = self._rows.agg(*self._metrics).first()
        return {k: int(row[k]) for k in ("rows", "bad", "text")}


class UnitRunner:
    """Reads, transforms and commits a stage's pending units; see the module docstring.

    ``transform(rows, unit)`` turns a unit's good rows (the input's columns) into what the stage writes;
    ``after_unit(spark, path, unit)`` checks a written unit before its commit (its dict joins the marker);
    ``translate(err)`` turns a failed write into the stage's own error, or None.
    """

    def __init__(self, spark: SparkSession, plan: UnitPlan, source: Source, data_schema, transform: Callable,
                 *, text_column: str, on_bad_file: str, in_flight: int = 2, check_text_column: bool = True,
                 after_unit: Callable | None = None, translate: Callable | None = None):
        self.spark = spark
        self.plan = plan
        self.source = source
        self.schema = data_schema
        self.transform = transform
        self.text_column = text_column
        self.on_bad_file = on_bad_file
        self.in_flight = max(1, in_flight)
        self.check_text_column = check_text_column
        self.after_unit = after_unit or (lambda spark, path, unit: {})
        self.translate = translate or (lambda err: None)
        self.scored_rows = 0
        self.committed: set[int] = set()  # units committed by this run
        self._stopping = threading.Event()  # set on Ctrl-C / SIGTERM: no unit starts any more
        self._lock = threading.Lock()

    def run(self, units: list[int]) -> None:
        """Run ``units`` with at most ``in_flight`` at once; the first failure stops new units and is raised."""
        if not units:
            return
        if self.in_flight == 1 or len(units) == 1:
            try:
                for unit in units:
                    self._unit(unit)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the unit's Spark job (committed units stay committed)
                cancel_jobs(self.spark)
                raise
            return
        with ThreadPoolExecutor(self.in_flight, thread_name_prefix="spark_jql-unit") as pool:
            running: set = set()
            try:
                self._overlapped(pool, list(units), running)
            except KeyboardInterrupt:  # before the pool waits for its threads: they end with their cancelled jobs
                self._stop(running)
                raise

    def _overlapped(self, pool: ThreadPoolExecutor, queue: list[int], running: set) -> None:
        """Keep ``in_flight`` units (``running``, updated in place) going until ``queue`` is empty; raise the first failure."""
        running.update(pool.submit(self._unit, queue.pop(0)) for _ in range(min(self.in_flight, len(queue))))
        while running:
            done, _ = wait(running, timeout=0.5, return_when=FIRST_EXCEPTION)  # wakes up for Ctrl-C / SIGTERM
            running.difference_update(done)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                wait(running)  # let the units in flight finish (and commit): less to redo on the rerun
                raise failed[0].exception()
            while queue and len(running) < self.in_flight:
                running.add(pool.submit(self._unit, queue.pop(0)))

    def _stop(self, running: set) -> None:
        """Ctrl-C / SIGTERM: cancel the units' Spark jobs until their threads end (one may start a job after a cancel)."""
        self._stopping.set()
        while running:
            cancel_jobs(self.spark)
            _, left = wait(running, timeout=0.5)
            running.intersection_update(left)

    # -- one unit -------------------------------------------------------------------------------------
    def _unit(self, unit: int) -> None:
        if self._stopping.is_set():
            return
        files = self.plan.files(unit)
        known = [(p, self.source.skipped[p]) for p in files if p in self.source.skipped]  # found by the schema pass
        files = [p for p in files if p not in self.source.skipped]
        try:
            outcome = self._write(unit, files)
        except SparkJQLError:
            raise
        except Exception:  # a file Spark cannot read through: find which, probing every column
            bad = find_bad_files(self.spark, files, self.source.fmt, self.schema, self.text_column,
                                 self.source.base) if self.source.is_files else []
            if not bad:
                raise
            outcome = self._write(unit, readable_files(files, bad, self.on_bad_file))
            outcome.skipped_files += [{"file": p, "error": r} for p, r in bad]
        outcome.skipped_files[:0] = [{"file": p, "error": r} for p, r in known]
        extra = self.after_unit(self.spark, self.plan.path(unit), unit)  # may refuse the unit: not committed
        self.plan.commit(unit, {**outcome.marker(), **extra})
        with self._lock:
            self.committed.add(unit)

    def _write(self, unit: int, files: list[str]) -> UnitOutcome:
        path = self.plan.path(unit)
        if not files:
            self.transform(self.spark.createDataFrame([], self.schema), unit).write.mode("overwrite").parquet(path)
            return UnitOutcome(0)
        counts = _Counts(self._rows(unit, files), self.text_column)
        rows = counts.frame
        if self.on_bad_file == "fail":  # stop at the first bad record, inside the pass that scores
            message = F.concat(F.lit(_BAD_MARK), F.col(FILE), F.lit(": "), F.col(BAD))
            good = rows.where(F.when(F.col(BAD).isNotNull(), F.raise_error(message)).otherwise(F.lit(True)))
        else:
            good = rows.where(F.col(BAD).isNull())
        try:
            self.transform(good.drop(FILE, BAD), unit).write.mode("overwrite").parquet(path)  # Spark's committer: all or nothing
        except Exception as err:
            own = self.translate(err)
            if own is not None:
                raise own from None
            bad_file = _bad_record_file(err)
            if bad_file is None:
                raise
            raise self._bad_record_error(bad_file) from None
        found = counts.get()
        good_rows = found["rows"] - found["bad"]
        written = self.spark.read.parquet(path).count()  # footers only
        if written != good_rows:
            raise AccountingError(f"{path}: read {good_rows} rows but wrote {written}")
        if self.check_text_column and self.source.is_files and found["text"] < good_rows:
            without = self._files_without_text(files)  # merged schemas make a missing text column null: a bad file
            if without:
                rest = readable_files(files, without, self.on_bad_file)
                outcome = self._write(unit, rest)
                outcome.skipped_files += [{"file": p, "error": r} for p, r in without]
                return outcome
        with self._lock:
            self.scored_rows += good_rows
        skipped = self._bad_records_by_file(unit, files) if found["bad"] else {}
        return UnitOutcome(good_rows, skipped)

    def _rows(self, unit: int, files: list[str]) -> DataFrame:
        """The unit's rows: its files, and with buckets only the rows whose text hashes to its bucket."""
        if self.source.is_files:
            sizes = {f.path: f.size or 0 for f in self.plan.units[unit]}
            parts = [self.source.read(part, self.schema) for part in last_wave(files, sizes)]
            rows = functools.reduce(lambda body, tail: body.union(tail), parts)
        else:
            rows = self.source.read(files, self.schema)
        if self.plan.buckets > 1:
            hashed = F.pmod(F.xxhash64(quoted(self.text_column)), F.lit(self.plan.buckets))
            rows = rows.where(hashed == self.plan.bucket(unit))
        return rows

    # -- error paths: a second look at the unit's files, only when something is wrong --------------
    def _bad_record_error(self, path: str) -> InputError:
        total = self.source.read([path], self.schema).where(F.col(BAD).isNotNull()).count()
        found = first_bad_line(self.spark, path, self.schema, self.text_column, self.source.base)
        where = f"line {found[0]}: {found[1]}: {found[2]!r}" if found else "bad records"
        return InputError(f"{normalise(path)}: {where} ({total} bad record(s) in this file; "
                          "set io.on_bad_file=skip to skip and count them)")

    def _bad_records_by_file(self, unit: int, files: list[str]) -> dict[str, int]:
        rows = self._rows(unit, files).where(F.col(BAD).isNotNull()).groupBy(FILE).count().collect()
        found = {normalise(r[FILE]): int(r["count"]) for r in rows}
        log.warning("skipping %d bad record(s) in %d file(s)", sum(found.values()), len(found))
        return found

    def _files_without_text(self, files: list[str]) -> list[tuple[str, str]]:
        """(file, why) for each file without a single text value that lacks the text column (parquet) or key (JSON)."""
        text = self.text_column
        if self.source.fmt == "json":  # candidates by a raw text scan (no JSON parsing): no line holds "text" at all
            lines = self.spark.read.text(files).select(F.input_file_name().alias(FILE), F.instr("value", json.dumps(text)).alias("n"))
        else:  # parquet: the text column alone
            lines = self.source.read(files, self.schema).select(FILE, F.when(quoted(text).isNotNull(), 1).alias("n"))
        per_file = lines.groupBy(FILE).agg(F.max("n").alias("n")).collect()
        found = []
        for r in per_file:
            if r["n"]:
                continue
            own = self.source.schema([normalise(r[FILE])]).names  # this file's own columns (parquet footer, JSON inference)
            if text not in own:
                what = "column" if self.source.fmt == "parquet" else "key in any record"
                found.append((normalise(r[FILE]), f"has no {what} {text!r} (columns.text; its columns are "
                                                  f"{own[:10]}); every input file needs it"))
        return sorted(found)


def _bad_record_file(err: BaseException) -> str | None:
    """The file named by the in-query bad-record error, out of Spark's exception chain."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if _BAD_MARK in text:
            rest = text.split(_BAD_MARK, 1)[1]
            return rest.split(": ", 1)[0].strip()
        err = err.__cause__ or err.__context__
    return None
