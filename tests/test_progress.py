"""Driver progress (status tracker + accumulator) and worker batch timing logs."""

from __future__ import annotations

import logging
import time

import pytest

from spark_jql.spark.progress import (
    BatchTimer,
    ScoringProgress,
    Snapshot,
    TaskClock,
    estimate,
    format_duration,
)


def test_format_duration():
    assert format_duration(5) == "5s" and format_duration(65) == "1m05s" and format_duration(3725) == "1h02m05s"
    assert format_duration(None) == "?"


def test_estimate_gives_docs_rate_and_eta_from_tasks():
    s = estimate(elapsed=10, total=1000, tasks_total=10, tasks_done=2, tasks_running=2)
    assert s.docs == 200 and s.docs_per_second == pytest.approx(20) and s.eta_seconds == pytest.approx(40)
    s = estimate(elapsed=10, total=1000, tasks_total=10, tasks_done=5.5, tasks_running=2)  # running tasks' parts
    assert s.docs == 550 and s.tasks_done == 5 and s.fraction == pytest.approx(0.55)
    s = estimate(elapsed=10, total=100, tasks_total=4, tasks_done=4, tasks_running=0)
    assert s.docs == 100 and s.eta_seconds == 0
    s = estimate(elapsed=10, total=None, tasks_total=8, tasks_done=2, tasks_running=2)
    assert s.docs == 0 and s.eta_seconds == pytest.approx(30)
    msg = Snapshot(10, 1000, 250, 8, 2, 2, 25.0, 30.0).message("annotate")
    assert msg == "annotate: 250 / 1,000 docs (25.0%), tasks 2/8 done, 2 running, 25.0 docs/s, ETA 30s"


def test_task_clock_moves_between_task_ends():
    clock = TaskClock()
    assert clock.update(0.0, done=0, running=2) == 0  # nothing ended yet: no duration known
    assert clock.update(5.0, done=0, running=2) == 0
    # One ended after 10 s and a new one started: the other (age 10 s, as long as the mean) counts 0.95 at most.
    assert clock.update(10.0, done=1, running=2) == pytest.approx(1.95)
    # 5 s later the newer task (age 5 s) counts half of a task.
    assert clock.update(15.0, done=1, running=2) == pytest.approx(1 + 0.95 + 0.5)
    assert clock.update(17.5, done=1, running=2) == pytest.approx(1 + 0.95 + 0.75)
    assert clock.update(20.0, done=3, running=0) == pytest.approx(3.0)


def test_batch_timer_is_rate_limited():
    now = [0.0]
    logger = logging.getLogger("spark_jql.test_worker")
    timer = BatchTimer(interval=30, clock=lambda: now[0], logger=logger)

    def frames():
        for _ in range(100):
            now[0] += 1.0  # each batch takes one second
            yield [0] * 10

    assert sum(len(f) for f in timer.timed(frames())) == 1000
    assert timer.lines == 3  # 100 s of batches, one line per 30 s
    assert timer.state["docs"] == 100  # the last 10 batches are not logged yet


def test_progress_logs_while_spark_runs(spark, caplog):
    """Classic session, tasks that send no reports (grace 0: as if executors could not reach the driver): the status
    tracker's task counts; lines come while tasks run, docs never go backwards."""
    sc = spark.sparkContext

    def slow(index, rows):  # tasks of 1, 2, 3, 4 s: their ends are spread out whatever the start-up costs
        n = 0
        for _ in rows:
            time.sleep(0.1 * (index + 1))
            n += 1
        yield n

    logger = logging.getLogger("spark_jql.spark.progress")
    with caplog.at_level(logging.INFO, logger="spark_jql.spark.progress"):
        with ScoringProgress(spark, total=40, label="test", interval=0.3, logger=logger, grace=0) as progress:
            assert sum(sc.parallelize(range(40), 4).mapPartitionsWithIndex(slow).collect()) == 40
    lines = [r.getMessage() for r in caplog.records if r.name == "spark_jql.spark.progress"]
    assert any(line.startswith("test: ") and "/ 40 docs" in line and "ETA" in line for line in lines), lines
    assert lines[-1].startswith("test: done, 40 docs in")
    last = progress.snapshots[-1]
    assert last.docs == 40 and last.tasks_total == 4 and last.tasks_done == 4
    assert [s.docs for s in progress.snapshots] == sorted(s.docs for s in progress.snapshots)  # never backwards
    # Between the first and the last task end the estimate takes values no task count alone gives.
    assert {s.docs for s in progress.snapshots} - {0, 10, 20, 30, 40}, [(s.docs, s.tasks_done, s.tasks_running) for s in progress.snapshots]


def test_quiet_when_info_is_off(spark, caplog):
    logger = logging.getLogger("spark_jql.spark.progress")
    with caplog.at_level(logging.WARNING, logger="spark_jql.spark.progress"):
        with ScoringProgress(spark, total=4, interval=0.05, logger=logger) as progress:
            spark.sparkContext.parallelize(range(4), 2).count()
        assert progress._thread is None
    assert not [r for r in caplog.records if r.name == "spark_jql.spark.progress"]
