"""Progress of a scoring run: a driver-side reporter and worker-side batch timings.

Driver side, :class:`ScoringProgress` is a context manager around the action that
scores (``annotate``'s parquet write). A daemon thread polls Spark's status
tracker (tasks done / running / total of the jobs started inside the block) and
the ``docs`` accumulator (exact, but updated only when a task ends), and logs

    spark_jql.spark.progress: annotate: 1,204,000 / 3,000,000 docs (40.1%), tasks 120/300 done, 16 running, 2,310 docs/s, ETA 13m00s

at INFO every ``interval`` seconds (``SPARK_JQL_PROGRESS_INTERVAL``, default 15).
``spark-jql`` logs at WARNING unless ``-v`` is given, so it is quiet by default.
No job group is set: a notebook's own job groups (Databricks cells) are left alone.

Worker side, :class:`BatchTimer` wraps the scorer's output batches in the UDF and
logs, at most every ``SPARK_JQL_WORKER_LOG_INTERVAL`` seconds (default 30) per
Python worker, the batches, documents and docs/s since its last line (INFO), and
every batch at DEBUG. Workers inherit the driver's ``spark_jql`` log level when
the UDF is created, so ``-v`` / ``-vv`` reach the executors' stderr logs too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("spark_jql.spark.progress")
worker_log = logging.getLogger("spark_jql.worker")

DEFAULT_INTERVAL = 15.0
DEFAULT_WORKER_INTERVAL = 30.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``1h02m05s``; ``None`` -> ``?``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


@dataclass
class Snapshot:
    """One observation of a scoring run."""

    elapsed: float  # seconds since the block started
    total: int | None  # documents to score (None: unknown)
    docs: int  # documents scored so far (best estimate)
    tasks_total: int
    tasks_done: int
    tasks_running: int
    docs_per_second: float | None
    eta_seconds: float | None

    @property
    def fraction(self) -> float | None:
        if self.total:
            return min(1.0, self.docs / self.total)
        if self.tasks_total:
            return self.tasks_done / self.tasks_total
        return None

    def message(self, label: str = "scoring") -> str:
        of = f" / {self.total:,}" if self.total is not None else ""
        pct = f" ({self.fraction:.1%})" if self.fraction is not None else ""
        rate = f"{self.docs_per_second:,.1f} docs/s" if self.docs_per_second is not None else "? docs/s"
        return (
            f"{label}: {self.docs:,}{of} docs{pct}, tasks {self.tasks_done}/{self.tasks_total} done, "
            f"{self.tasks_running} running, {rate}, ETA {format_duration(self.eta_seconds)}"
        )


def estimate(elapsed: float, total: int | None, accumulated: int | None, tasks_total: int, tasks_done: int, tasks_running: int) -> Snapshot:
    """Combine the exact-but-late accumulator with the task fraction into docs done, rate and ETA.

    The accumulator counts documents of finished tasks (plus retried ones, hence
    the clamp); ``total * tasks_done / tasks_total`` assumes even partitions. The
    larger of the two is used, so progress never goes backwards between the two signals.
    """
    by_tasks = int(total * tasks_done / tasks_total) if total is not None and tasks_total else 0
    docs = max(accumulated or 0, by_tasks)
    if total is not None:
        docs = min(docs, total)
    rate = docs / elapsed if elapsed > 0 and docs > 0 else None
    eta = None
    if total is not None and rate:
        eta = (total - docs) / rate
    elif tasks_total and tasks_done:
        eta = elapsed * (tasks_total - tasks_done) / tasks_done
    if total is not None and docs >= total:
        eta = 0.0
    return Snapshot(elapsed, total, docs, tasks_total, tasks_done, tasks_running, rate, eta)


class ScoringProgress:
    """Log scored / total, docs/s and ETA while the ``with`` block runs Spark jobs.

    >>> with ScoringProgress(sc, total=input_rows, docs=docs_accumulator, label="annotate"):
    ...     scored.write.parquet(path)
    """

    def __init__(self, sc, total: int | None = None, docs=None, label: str = "scoring",
                 interval: float | None = None, logger: logging.Logger | None = None):
        self.sc = sc
        self.total = total
        self.docs = docs
        self.label = label
        self.interval = interval if interval is not None else _env_float("SPARK_JQL_PROGRESS_INTERVAL", DEFAULT_INTERVAL)
        self.log = logger or log
        self.snapshots: list[Snapshot] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_before: set[int] = set()
        self._stages: dict[int, tuple[int, int, int]] = {}  # stage id -> (tasks, done, running)
        self._start = 0.0
        self._docs_base = 0

    # -- observation ----------------------------------------------------------
    def _poll_tracker(self) -> None:
        tracker = self.sc.statusTracker()
        for job_id in set(tracker.getActiveJobsIds()) - self._jobs_before:
            info = tracker.getJobInfo(job_id)
            for stage_id in info.stageIds if info else ():
                self._stages.setdefault(stage_id, (0, 0, 0))
        # also refresh stages whose job has ended, while the tracker still knows them
        for stage_id in list(self._stages):
            stage = tracker.getStageInfo(stage_id)
            if stage is not None and stage.numTasks:
                self._stages[stage_id] = (stage.numTasks, stage.numCompletedTasks, stage.numActiveTasks)

    def snapshot(self) -> Snapshot:
        try:
            self._poll_tracker()
        except Exception as err:  # the tracker is best effort; never fail a job for progress
            self.log.debug("status tracker poll failed: %s", err)
        tasks_total = sum(t for t, _, _ in self._stages.values())
        tasks_done = sum(d for _, d, _ in self._stages.values())
        running = sum(r for _, _, r in self._stages.values())
        accumulated = None
        if self.docs is not None:
            try:
                accumulated = int(self.docs.value) - self._docs_base
            except Exception:
                accumulated = None
        snap = estimate(time.perf_counter() - self._start, self.total, accumulated, tasks_total, tasks_done, running)
        self.snapshots.append(snap)
        return snap

    # -- thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            snap = self.snapshot()
            if snap.tasks_total or snap.docs:
                self.log.info(snap.message(self.label))

    def __enter__(self) -> "ScoringProgress":
        self._start = time.perf_counter()
        try:
            self._docs_base = int(self.docs.value) if self.docs is not None else 0  # accumulators may span several blocks
        except Exception:
            self._docs_base = 0
        try:
            self._jobs_before = set(self.sc.statusTracker().getActiveJobsIds())
        except Exception:
            self._jobs_before = set()
        if self.log.isEnabledFor(logging.INFO) or self.log.isEnabledFor(logging.DEBUG):
            self._thread = threading.Thread(target=self._run, name="spark_jql-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if exc_type is None and self.log.isEnabledFor(logging.INFO):
            snap = self.snapshot()
            done = snap.docs if self.total is None else max(snap.docs, self.total)
            rate = done / snap.elapsed if snap.elapsed > 0 else 0.0
            self.log.info("%s: done, %s docs in %s (%.1f docs/s)", self.label, f"{done:,}", format_duration(snap.elapsed), rate)


# -- worker side --------------------------------------------------------------
_WORKER_STATE = {"last_log": None, "batches": 0, "docs": 0, "seconds": 0.0, "configured": False}


def configure_worker_logging(level: int) -> None:
    """In an executor's Python worker: send ``spark_jql`` logs at ``level`` to stderr (the executor log)."""
    if _WORKER_STATE["configured"]:
        return
    _WORKER_STATE["configured"] = True
    root = logging.getLogger("spark_jql")
    root.setLevel(level)
    if level <= logging.INFO and not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


class BatchTimer:
    """Times each batch a generator yields and logs a rate-limited summary per worker process.

    Timing runs from when the consumer asks for the next batch to when it is ready
    (reading the Arrow batch, tokenising, embedding, scoring), so the time Spark
    spends writing results downstream is not counted.
    """

    def __init__(self, interval: float | None = None, clock=time.perf_counter, logger: logging.Logger | None = None):
        self.interval = interval if interval is not None else _env_float("SPARK_JQL_WORKER_LOG_INTERVAL", DEFAULT_WORKER_INTERVAL)
        self.clock = clock
        self.log = logger or worker_log
        self.state = _WORKER_STATE if logger is None else {"last_log": None, "batches": 0, "docs": 0, "seconds": 0.0}
        self.lines = 0

    def record(self, rows: int, seconds: float) -> None:
        st = self.state
        st["batches"] += 1
        st["docs"] += rows
        st["seconds"] += seconds
        self.log.debug("pid %d: batch of %d docs in %.3fs (%.1f docs/s)", os.getpid(), rows, seconds, rows / seconds if seconds else 0.0)
        now = self.clock()
        if st["last_log"] is None:
            st["last_log"] = now - seconds
        if now - st["last_log"] >= self.interval:
            busy = st["seconds"]
            self.log.info(
                "pid %d: %d batches, %d docs in the last %.0fs; %.1f docs/s while scoring (%.0f%% busy)",
                os.getpid(), st["batches"], st["docs"], now - st["last_log"],
                st["docs"] / busy if busy else 0.0, 100.0 * busy / max(now - st["last_log"], 1e-9),
            )
            self.lines += 1
            st.update(last_log=now, batches=0, docs=0, seconds=0.0)

    def timed(self, frames):
        it = iter(frames)
        while True:
            start = self.clock()
            try:
                frame = next(it)
            except StopIteration:
                return
            self.record(len(frame), self.clock() - start)
            yield frame
