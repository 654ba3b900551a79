"""Driver progress (status tracker + accumulator) and worker batch timing logs."""

from __future__ import annotations

import logging
import time

import pytest

from spark_jql.spark.progress import BatchTimer, ScoringProgress, Snapshot, estimate, format_duration


def test_format_duration():
    assert format_duration(5) == "5s" and format_duration(65) == "1m05s" and format_duration(3725) == "1h02m05s"
    assert format_duration(None) == "?"


def test_estimate_uses_the_larger_signal_and_gives_eta():
    s = estimate(elapsed=10, total=1000, accumulated=200, tasks_total=10, tasks_done=1, tasks_running=2)
    assert s.docs == 200 and s.docs_per_second == pytest.approx(20) and s.eta_seconds == pytest.approx(40)
    s = estimate(elapsed=10, total=1000, accumulated=0, tasks_total=10, tasks_done=5, tasks_running=2)
    assert s.docs == 500 and s.fraction == pytest.approx(0.5)
    s = estimate(elapsed=10, total=100, accumulated=130, tasks_total=4, tasks_done=4, tasks_running=0)  # retried tasks
    assert s.docs == 100 and s.eta_seconds == 0
    s = estimate(elapsed=10, total=None, accumulated=None, tasks_total=8, tasks_done=2, tasks_running=2)
    assert s.docs == 0 and s.eta_seconds == pytest.approx(30)
    msg = Snapshot(10, 1000, 250, 8, 2, 2, 25.0, 30.0).message("annotate")
    assert msg == "annotate: 250 / 1,000 docs (25.0%), tasks 2/8 done, 2 running, 25.0 docs/s, ETA 30s"


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
    sc = spark.sparkContext
    docs = sc.accumulator(0)

    def slow(rows):
        n = 0
        for r in rows:
            time.sleep(0.05)
            n += 1
        docs.add(n)
        yield n

    logger = logging.getLogger("spark_jql.spark.progress")
    with caplog.at_level(logging.INFO, logger="spark_jql.spark.progress"):
        with ScoringProgress(sc, total=40, docs=docs, label="test", interval=0.2, logger=logger) as progress:
            assert sum(sc.parallelize(range(40), 4).mapPartitions(slow).collect()) == 40
    lines = [r.getMessage() for r in caplog.records if r.name == "spark_jql.spark.progress"]
    assert any(line.startswith("test: ") and "/ 40 docs" in line and "ETA" in line for line in lines), lines
    assert lines[-1].startswith("test: done, 40 docs in")
    last = progress.snapshots[-1]
    assert last.docs == 40 and last.tasks_total == 4 and last.tasks_done == 4
    assert [s.docs for s in progress.snapshots] == sorted(s.docs for s in progress.snapshots)  # never backwards


def test_quiet_by_default(spark, caplog):
    logger = logging.getLogger("spark_jql.spark.progress")
    with caplog.at_level(logging.WARNING, logger="spark_jql.spark.progress"):
        with ScoringProgress(spark.sparkContext, total=4, interval=0.05, logger=logger) as progress:
            spark.sparkContext.parallelize(range(4), 2).count()
        assert progress._thread is None
    assert not [r for r in caplog.records if r.name == "spark_jql.spark.progress"]
