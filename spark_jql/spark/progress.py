"""Progress of a scoring run: a driver-side reporter and worker-side batch timings.

Driver side, :class:`ScoringProgress` is a context manager around the action that
scores (``annotate``'s parquet write). It follows the Spark tasks of that action,
on a classic session through the status tracker (polled every half second), on a
Spark Connect session through the progress handler Spark 4 sends with each
running query (``spark.registerProgressHandler``), and logs

    spark_jql.spark.progress: annotate: 1,204,000 / 3,000,000 docs (40.1%), tasks 120/300 done, 16 running, 2,310 docs/s, ETA 13m00s

every ``interval`` seconds (``SPARK_JQL_PROGRESS_INTERVAL``, default 5; 0 turns it
off). ``spark-jql`` shows these lines at its default verbosity; in IPython/Jupyter a
progress bar shows them instead (tqdm's notebook bar, or its plain line where
ipywidgets is missing). Documents done come from the scoring tasks themselves: each
reports its count after every Arrow batch (spark/beacon.py), so the count moves while a
long task runs and counts only the scoring stage. Where no report arrives (executors
that cannot reach this process), a finished task stands for ``total / tasks``
documents and a running task for the part of that its age covers, judged by how long
finished tasks took; only each job's last stage (the one that scores) is counted.
No job group is set: a notebook's own job groups (Databricks cells) are left alone.

:func:`spark_jql.spark.notebook.notebook_beacon` gives ``annotate`` the same bar in a notebook,
where the scoring runs later, in the user's own action (``.write``, ``.show()``).

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
from collections import deque
from dataclasses import dataclass

from spark_jql.spark import notebook
from spark_jql.spark.beacon import BeaconAddress, BeaconListener, advertised_host, env_float

log = logging.getLogger("spark_jql.spark.progress")
worker_log = logging.getLogger("spark_jql.worker")

DEFAULT_INTERVAL = 5.0
DEFAULT_WORKER_INTERVAL = 30.0
POLL_SECONDS = 0.5


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


def estimate(elapsed: float, total: int | None, tasks_total: int, tasks_done: float, tasks_running: int) -> Snapshot:
    """Docs done, rate and ETA from the tasks' progress (``tasks_done`` may count running tasks' parts)."""
    done = int(tasks_done)
    docs = int(total * tasks_done / tasks_total) if total is not None and tasks_total else 0
    if total is not None:
        docs = min(docs, total)
    rate = docs / elapsed if elapsed > 0 and docs > 0 else None
    eta = None
    if total is not None and rate:
        eta = (total - docs) / rate
    elif tasks_total and tasks_done:
        eta = elapsed * (tasks_total - tasks_done) / tasks_done
    if tasks_total and done >= tasks_total:
        eta = 0.0
    return Snapshot(elapsed, total, docs, tasks_total, done, tasks_running, rate, eta)


class TaskClock:
    """Estimates how much of its work each running task has done, from task counts alone.

    Neither Spark's status tracker nor Connect's progress messages say how far a
    running task is. Tasks that start are given the time they were first seen
    running; tasks that end are taken oldest-first, which gives their durations.
    A running task's share is its age over the mean duration of ended tasks
    (at most 0.95: it is not done until Spark says so). Before any task ends the
    running tasks count for nothing.
    """

    def __init__(self):
        self.starts: deque[float] = deque()
        self.done = 0
        self.durations: list[float] = []

    def update(self, now: float, done: int, running: int) -> float:
        """Record a poll; return tasks done including running tasks' estimated parts."""
        for _ in range(max(0, done - self.done)):
            if self.starts:
                self.durations.append(now - self.starts.popleft())
        self.done = max(self.done, done)
        while len(self.starts) > running:
            self.starts.popleft()
        while len(self.starts) < running:
            self.starts.append(now)
        if not self.durations:
            return float(self.done)
        mean = sum(self.durations) / len(self.durations)
        return self.done + sum(min(0.95, (now - s) / mean) if mean > 0 else 0.0 for s in self.starts)


def _counted(stages: dict, final: set, scoring: set | None) -> tuple[int, int, int]:
    """Tasks of the scoring stages: those the beacon named, else each job's last stage."""
    keep = [v for k, v in stages.items() if (k[-1] in scoring if scoring else k in final)]
    return tuple(sum(v[i] for v in keep) for i in range(3))


class _TrackerSource:
    """Task counts of the jobs started inside the block, from a classic session's status tracker."""

    def __init__(self, spark):
        self.tracker = spark.sparkContext.statusTracker()
        self.jobs_before = set(self.tracker.getActiveJobsIds())
        self.stages: dict[tuple, tuple[int, int, int]] = {}  # (stage id,) -> (tasks, done, running)
        self.final: set[tuple] = set()  # each job's last stage

    def poll(self, scoring: set | None = None) -> tuple[int, int, int]:
        for job_id in set(self.tracker.getActiveJobsIds()) - self.jobs_before:
            info = self.tracker.getJobInfo(job_id)
            for stage_id in info.stageIds if info else ():
                self.stages.setdefault((stage_id,), (0, 0, 0))
            if info and len(info.stageIds):
                self.final.add((max(info.stageIds),))
        for key in list(self.stages):  # also stages whose job ended, while the tracker knows them
            stage = self.tracker.getStageInfo(key[0])
            if stage is not None and stage.numTasks:
                self.stages[key] = (stage.numTasks, stage.numCompletedTasks, stage.numActiveTasks)
        return _counted(self.stages, self.final, scoring)

    def close(self) -> None:
        pass


class _ConnectSource:
    """Task counts from the progress messages a Spark Connect server sends while a query runs."""

    def __init__(self, spark):
        self.spark = spark
        self.stages: dict[tuple, tuple[int, int]] = {}  # (operation, stage id) -> (tasks, done)
        self.running = 0
        self.registered = hasattr(spark, "registerProgressHandler")  # pyspark >= 4.0
        if self.registered:
            spark.registerProgressHandler(self)

    def __call__(self, stages=None, inflight_tasks=0, operation_id=None, done=False, **_) -> None:
        try:  # an exception here would fail the user's query
            for st in stages or ():
                self.stages[(operation_id, st.stage_id)] = (st.num_tasks, st.num_completed_tasks, 0)
            self.running = 0 if done else int(inflight_tasks or 0)
        except Exception:  # pragma: no cover - defensive
            pass

    def poll(self, scoring: set | None = None) -> tuple[int, int, int]:
        last: dict = {}
        for op, stage_id in list(self.stages):
            last[op] = max(stage_id, last.get(op, stage_id))
        tasks, done, _ = _counted(dict(self.stages), {(op, sid) for op, sid in last.items()}, scoring)
        return tasks, done, self.running

    def close(self) -> None:
        if self.registered:
            try:
                self.spark.removeProgressHandler(self)
            except Exception:
                pass


class ScoringProgress:
    """Log scored / total, docs/s and ETA while the ``with`` block runs Spark jobs.

    >>> with ScoringProgress(spark, total=input_rows, label="annotate"):
    ...     scored.write.parquet(path)
    """

    def __init__(self, spark, total: int | None = None, label: str = "scoring",
                 interval: float | None = None, logger: logging.Logger | None = None, grace: float | None = None):
        self.spark = spark
        self.total = total
        self.label = label
        self.interval = interval if interval is not None else env_float("SPARK_JQL_PROGRESS_INTERVAL", DEFAULT_INTERVAL)
        self.log = logger or log
        self.snapshots: list[Snapshot] = []
        self.clock = TaskClock()
        self.beacon: BeaconListener | None = None
        self.reporting = False  # the scoring tasks' reports have arrived
        # Seconds to wait for the tasks' first report before trusting task counts: until then a job that only reads
        # (a shuffle's map side, a listing) would count as scored. After it, executors that cannot reach this process.
        self.grace = grace if grace is not None else env_float("SPARK_JQL_PROGRESS_GRACE", 120.0)
        self.address: BeaconAddress | None = None
        self.bar = None
        self._source = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._lock = threading.Lock()

    def reported(self):
        """What the scoring tasks reported so far (spark/beacon.py), or None."""
        if self.beacon is None or self.address is None:
            return None
        return self.beacon.counts(self.address.run)

    def snapshot(self) -> Snapshot:
        tasks_total = tasks_done = running = 0
        reported = self.reported()
        try:
            if self._source is not None:
                tasks_total, tasks_done, running = self._source.poll(reported.stages if reported else None)
        except Exception as err:  # progress is best effort; never fail a job for it
            self.log.debug("progress poll failed: %s", err)
        now = time.perf_counter()
        with self._lock:
            progress = self.clock.update(now, tasks_done, running)
            snap = estimate(now - self._start, self.total, tasks_total, progress, running)
            first_report = reported is not None and not self.reporting
            if reported is not None:  # the tasks' own counts: exact, and moving inside long tasks
                snap = from_reported(snap, reported.docs)
                self.reporting = True
            elif self.beacon is not None and snap.elapsed < self.grace:
                snap = Snapshot(snap.elapsed, snap.total, 0, snap.tasks_total, snap.tasks_done, snap.tasks_running,
                                None, None)  # no report yet: nothing is known to be scored
            # Never backwards (new stages, retries), except where the first report replaces the task estimate,
            # which a small job before the scoring one (a listing, a probe) may have pushed ahead.
            if self.snapshots and snap.docs < self.snapshots[-1].docs and not first_report:
                snap.docs = self.snapshots[-1].docs
            self.snapshots.append(snap)
        return snap

    def _run(self) -> None:
        next_log = time.perf_counter() + self.interval
        while not self._stop.wait(POLL_SECONDS if self.interval > POLL_SECONDS else self.interval):
            snap = self.snapshot()
            if self.bar is not None:
                self.bar.show(snap.docs, f"tasks {snap.tasks_done}/{snap.tasks_total}" if snap.tasks_total else None)
            elif time.perf_counter() >= next_log:
                next_log += self.interval
                self.log.info(snap.message(self.label))

    def __enter__(self) -> "ScoringProgress":
        from spark_jql.spark.session import is_connect

        self._start = time.perf_counter()
        try:
            self._source = _ConnectSource(self.spark) if is_connect(self.spark) else _TrackerSource(self.spark)
        except Exception as err:
            self.log.debug("no progress source: %s", err)
        try:
            self.beacon = BeaconListener(advertised_host(self.spark))
            self.address = self.beacon.address()
        except OSError as err:
            self.log.debug("no beacon: %s", err)
        _ACTIVE.append(self)
        if self.interval > 0 and notebook.in_notebook():
            self.bar = notebook.ProgressBar(self.label, self.total)
        if self.interval > 0 and (self.bar is not None or self.log.isEnabledFor(logging.INFO)):
            self._thread = threading.Thread(target=self._run, name="spark_jql-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if exc_type is None and self.interval > 0:
            snap = self.snapshot()
            done = snap.docs if self.total is None else max(snap.docs, self.total)
            rate = done / snap.elapsed if snap.elapsed > 0 else 0.0
            if self.bar is not None:
                self.bar.show(done)
            elif self.log.isEnabledFor(logging.INFO):
                self.log.info("%s: done, %s docs in %s (%.1f docs/s)", self.label, f"{done:,}",
                              format_duration(snap.elapsed), rate)
        if self.bar is not None:
            self.bar.close()
        if self._source is not None:
            self._source.close()
        if self.beacon is not None:
            self.beacon.close()


_ACTIVE: list[ScoringProgress] = []


def active_beacon() -> BeaconAddress | None:
    """The address of the innermost running :class:`ScoringProgress` (for UDFs built inside it), or None."""
    for progress in reversed(_ACTIVE):
        if progress.address is not None:
            return progress.address
    return None


def from_reported(snap: Snapshot, docs: int) -> Snapshot:
    """``snap`` with the documents the scoring tasks reported, its rate and ETA from them."""
    if snap.total is not None:
        docs = min(docs, snap.total)
    rate = docs / snap.elapsed if snap.elapsed > 0 and docs > 0 else None
    eta = (snap.total - docs) / rate if snap.total is not None and rate else snap.eta_seconds
    return Snapshot(snap.elapsed, snap.total, docs, snap.tasks_total, snap.tasks_done, snap.tasks_running, rate, eta)


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)


class BatchTimer:
    """Times each batch a generator yields and logs a rate-limited summary per worker process.

    Timing runs from when the consumer asks for the next batch to when it is ready
    (reading the Arrow batch, tokenising, embedding, scoring), so the time Spark
    spends writing results downstream is not counted.
    """

    def __init__(self, interval: float | None = None, clock=time.perf_counter, logger: logging.Logger | None = None):
        self.interval = interval if interval is not None else env_float("SPARK_JQL_WORKER_LOG_INTERVAL", DEFAULT_WORKER_INTERVAL)
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
