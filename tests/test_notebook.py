"""Notebooks: live progress from the scoring tasks (spark/beacon.py), the workers' Python checked in one
line (spark/workers.py), and the README's notebook snippet run as written (plain local session, Connect)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spark_jql.config import ScorerConfig
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.spark import annotate
from spark_jql.spark import notebook as notebook_module
from spark_jql.spark.beacon import BeaconListener, BeaconSender
from spark_jql.spark.notebook import ProgressBar
from spark_jql.spark.progress import ScoringProgress
from spark_jql.spark.workers import WorkerPythonError, check_worker_python

REPO = Path(__file__).resolve().parents[1]


def _wait(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_beacon_keeps_the_largest_count_of_any_attempt_per_partition():
    listener = BeaconListener("127.0.0.1")
    try:
        for line in ["r1 5 0 0 40", "r1 5 0 0 80", "r1 5 1 0 30", "r1 5 0 1 20",  # attempt 1 of partition 0 restarts
                     "r1 5 0 1 100", "r2 6 0 0 7", "not ours", "r1 x 0 0 1"]:
            listener.record(line.encode())
        counts = listener.counts("r1")
        assert counts.docs == 130 and counts.stages == {5} and counts.reports == 5
        assert listener.counts("r2").docs == 7 and listener.counts("r3") is None
        sender = BeaconSender(listener.address("r3"))  # over the socket, outside a task: stage/partition 0
        sender.add(3)
        sender.add(4)
        sender.close()
        _wait(lambda: (listener.counts("r3") or None) is not None and listener.counts("r3").docs == 7)
        assert listener.counts("r3").docs == 7
    finally:
        listener.close()


def _scorer(bundle: dict) -> ScorerConfig:
    return ScorerConfig(**bundle)


def test_progress_moves_inside_a_task_and_counts_only_the_scoring_stage(spark, gte_bundle, tmp_path, monkeypatch, caplog):
    """A shuffle before scoring: the read stage's tasks are not scored documents; one scoring task reports per batch."""
    monkeypatch.setenv("SPARK_JQL_BEACON_INTERVAL", "0")
    write_jsonl(generate_documents(120, seed=3), tmp_path / "in", files=3)
    df = spark.read.json(str(tmp_path / "in")).repartition(1)
    with caplog.at_level(logging.INFO, logger="spark_jql.spark.progress"), \
            ScoringProgress(spark, total=120, label="test", interval=0.2) as progress:
        scored = annotate(df, _scorer(gte_bundle), arrow_batch_size=8)
        scored.write.parquet(str(tmp_path / "out"))
        _wait(lambda: (progress.reported() or None) is not None and progress.reported().docs == 120, 5)
    reported = progress.reported()
    assert reported.docs == 120 and len(reported.partitions) == 1
    assert reported.reports >= 120 // 8  # one report per batch: the count moved while the single task ran
    last = progress.snapshots[-1]
    assert last.docs == 120 and last.tasks_total == 1, last  # the read and shuffle stages' tasks are not counted
    assert [s.docs for s in progress.snapshots] == sorted(s.docs for s in progress.snapshots)


class RecordingBar:
    """Stands in for tqdm: records what the progress bar was asked to show."""

    made: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.n, self.closed, self.postfix = kwargs, 0, False, None
        RecordingBar.made.append(self)

    def update(self, k):
        self.n += k

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def test_a_notebook_shows_a_bar_of_the_documents_annotate_scores(spark, gte_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(notebook_module, "in_notebook", lambda: True)
    monkeypatch.setattr(ProgressBar, "factory", RecordingBar)
    monkeypatch.setattr(notebook_module, "_NOTEBOOK", {})
    monkeypatch.setenv("SPARK_JQL_BEACON_INTERVAL", "0")
    RecordingBar.made = []
    write_jsonl(generate_documents(90, seed=4), tmp_path / "in", files=3)
    scored = spark.read.json(str(tmp_path / "in")).repartition(2).transform(annotate, _scorer(gte_bundle))
    assert len(scored.collect()) == 90  # the user's own action, cells after annotate (count() would skip the UDF)
    monitor = notebook_module._NOTEBOOK["progress"]
    _wait(lambda: sum(b.n for b in RecordingBar.made) == 90, 10)
    monitor.finish()
    assert len(RecordingBar.made) == 1, [b.n for b in RecordingBar.made]  # one action, one bar, only its scoring stage
    bar = RecordingBar.made[0]
    assert bar.n == 90 and bar.closed and bar.kwargs["unit"] == "docs"


def test_outside_notebooks_the_progress_logs_and_draws_no_bar(spark):
    assert "IPython" not in sys.modules or not notebook_module.in_notebook()
    with ScoringProgress(spark, total=4, interval=0.1) as progress:
        spark.range(4).count()
    assert progress.bar is None


def test_workers_without_the_scoring_packages_are_one_line(spark, tmp_path):
    """The executors' Python lacks site-packages (pandas, torch, spark_jql): one line naming it and the setting."""
    bare = tmp_path / "python3-bare"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    sc = spark.sparkContext
    before = sc.pythonExec
    sc.pythonExec = str(bare)
    try:
        with pytest.raises(WorkerPythonError) as err:
            check_worker_python(spark)
    finally:
        sc.pythonExec = before
    message = str(err.value)
    assert "\n" not in message and "cannot import pandas, pyarrow, torch" in message, message
    assert "spark.pyspark.python / PYSPARK_PYTHON" in message
    check_worker_python(spark)  # the session's own interpreter has everything


def _readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### In a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _demo_like(folder: Path, bundle: dict) -> None:
    """The quick start's ``demo_output`` layout: encoder, heads.yaml, corpus (the snippet's paths)."""
    models = folder / "demo_output" / "models"
    (models / "heads").mkdir(parents=True)
    (models / "encoder").symlink_to(bundle["embedder"]["model"])
    (models / "heads" / "heads.yaml").write_text(yaml.safe_dump({"heads": bundle["heads"]}))
    write_jsonl(generate_documents(160, seed=8), folder / "demo_output" / "input" / "corpus", files=2)


def _run_snippet(cwd: Path, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", _readme_snippet()], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept, dropped = map(int, re.search(r"kept (\d+), dropped (\d+)", proc.stdout).groups())
    assert kept + dropped == 160 and kept > 0 and dropped > 0
    return proc.stdout


def test_the_readme_notebook_snippet_runs_in_a_plain_local_python_session(gte_bundle, tmp_path):
    """No PYSPARK_PYTHON, and the ``python3`` on PATH has none of our packages, as on a fresh laptop."""
    _demo_like(tmp_path, gte_bundle)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    (bin_dir / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_REMOTE", "PYTEST"))}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    _run_snippet(tmp_path, env)
    thresholds = json.loads((tmp_path / "demo_output" / "notebook" / "thresholds.json").read_text())
    assert thresholds


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
def test_the_readme_notebook_snippet_runs_on_spark_connect(spark, connect_url, gte_bundle, tmp_path):
    _demo_like(tmp_path, gte_bundle)
    env = {**os.environ, "SPARK_REMOTE": connect_url, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    _run_snippet(tmp_path, env)


def test_the_first_report_replaces_an_estimate_a_small_job_pushed_ahead(spark, caplog):
    """Past the grace period (executors that cannot report), a small job inside the block ends all its tasks and the
    task estimate says 100%. A late first report (10 documents) is then the count, not held at 100% by 'never
    backwards'. (Within the grace period the count waits for the reports: the test above.)"""
    with caplog.at_level(logging.INFO, logger="spark_jql.spark.progress"), \
            ScoringProgress(spark, total=120, label="test", interval=0.2, grace=0) as progress:
        spark.sparkContext.parallelize(range(4), 2).map(lambda x: time.sleep(0.5) or x).count()  # seen while it runs
        _wait(lambda: progress.snapshots and progress.snapshots[-1].docs == 120, 5)
        assert progress.snapshots[-1].docs == 120  # the small job's tasks, taken for the stage's
        progress.beacon.record(f"{progress.address.run} 99 0 0 10".encode())
        assert progress.snapshot().docs == 10
        progress.beacon.record(f"{progress.address.run} 99 0 0 4".encode())  # an older datagram: never backwards
        assert progress.snapshot().docs == 10
