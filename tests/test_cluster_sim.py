"""The cluster-simulation bench: the simulated device hook, the busy arithmetic, and one --quick run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]


def test_simulated_device_sleeps_logs_and_returns_unit_vectors(tmp_path, monkeypatch):
    import torch

    from spark_jql.scoring import simulated

    monkeypatch.delenv(simulated.ENV, raising=False)
    assert simulated.from_env() is None  # the normal case: no hook
    monkeypatch.setenv(simulated.ENV, f"0.5,{tmp_path / 'log'}")
    device = simulated.from_env()
    emb = device.embed([[0, 5, 2], [0, 2]], 8, torch.device("cpu"))  # 5 real tokens -> 2.5 ms
    assert emb.shape == (2, 8) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(2))
    assert torch.equal(emb, device.embed([[0, 5, 2], [0, 2]], 8, torch.device("cpu")))  # deterministic
    pid, start, end, tokens = (tmp_path / "log" / f"device-{os.getpid()}.tsv").read_text().splitlines()[0].split("\t")
    assert int(pid) == os.getpid() and int(tokens) == 5 and float(end) - float(start) >= 0.0025
    monkeypatch.setenv(simulated.ENV, "fast,/tmp/x")
    with pytest.raises(ValueError, match="seconds per 1000 tokens"):
        simulated.from_env()


def test_busy_summary_counts_idle_and_full_slots():
    from spark_jql.devtools.bench.device_log import busy_summary

    # two slots: both busy 0-1 s, one busy 1-2 s, none 2-3 s, one 3-4 s
    intervals = [(1, 0.0, 1.0, 10), (2, 0.0, 2.0, 20), (1, 3.0, 4.0, 10)]
    found = busy_summary(intervals, slots=2)
    assert found["device_seconds"] == 4.0 and found["window_seconds"] == 4.0
    assert found["device_busy"] == 0.5 and found["tokens"] == 40
    assert found["no_slot_busy_seconds"] == 1.0 and found["all_slots_busy_seconds"] == 1.0


@pytest.mark.spark
@pytest.mark.slow
def test_quick_cluster_sim_runs_annotate_on_a_simulated_device(tmp_path):
    if not any(SHARED_DATA.glob("fineweb2_*.jsonl")):
        pytest.skip(f"no FineWeb2 samples under {SHARED_DATA} (the shared sample data lives beside the repo)")
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    cmd = [sys.executable, "-m", "spark_jql.devtools.bench", "cluster-sim", "--quick", "--slots", "2",
           "--workloads", "small-files", "--device-seconds-per-slot", "1", "--workdir", str(tmp_path / "work"),
           "--keep", "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (w,) = json.loads(out.read_text())["workloads"]
    for key in ("name", "slots", "documents", "device_seconds", "window_seconds", "device_busy", "stage_seconds", "settings"):
        assert key in w, key
    generated = sum(1 for f in (tmp_path / "work" / "small-files" / "data").glob("*.jsonl") for _ in f.open())
    assert w["name"] == "small-files" and w["slots"] == 2
    assert w["documents"] == generated == w["scored_rows"]
    assert 0 < w["device_busy"] <= 1
    # the device really slept: every real token the driver counted went through it, at the configured rate
    assert w["tokens"] == w["expected_tokens"] > 0
    slept = w["tokens"] * w["settings"]["seconds_per_1k_tokens"] / 1000
    # measured intervals: never shorter than asked; longer by the wake-up delay on a loaded machine
    assert slept * 0.99 <= w["device_seconds"] <= slept * 1.3 + 0.05 * w["micro_batches"]
