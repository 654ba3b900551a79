"""One run per output: a live lease refuses a second run, a dead or silent holder's lease is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_jql.cli import main
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.errors import InputError
from spark_jql.spark import lease as lease_module
from spark_jql.spark.job import Job
from spark_jql.spark.lease import FORMAT, LEASE_NAME, OutputLease, lease_path

from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from spark_jql.spark.lease import OutputLease
with OutputLease(None, sys.argv[1], "annotate", heartbeat=0.5):
    print("held", flush=True)
    time.sleep(120)
"""


def _files(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LEASE_NAME}


def _forged(out: Path, heartbeat_age: float, machine: str = "elsewhere", pid: int = 4242) -> None:
    """A lease as another run would have left it."""
    now = time.time()
    out.mkdir(parents=True, exist_ok=True)
    (out / LEASE_NAME).write_text(json.dumps({
        "format": FORMAT, "run": "0ther", "what": "annotate", "output": str(out), "machine": machine,
        "host": machine.split()[0], "pid": pid, "started": now - heartbeat_age - 10, "heartbeat": now - heartbeat_age}))


@pytest.fixture()
def small_job(gte_bundle, tmp_path):
    write_jsonl(generate_documents(40, seed=3), tmp_path / "in", files=2)
    return job_overrides(gte_bundle, [str(tmp_path / "in" / "*.jsonl")], tmp_path / "out", **{"io.files_per_unit": "1"})


def test_live_lease_refuses_a_second_run_then_a_dead_holder_is_taken_over(spark, small_job, tmp_path, capsys):
    out = tmp_path / "out"
    Job(spark, load_config(None, small_job)).annotate()
    assert not (out / LEASE_NAME).exists()  # a finished run leaves no lease
    before = _files(out)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPARK_JQL_ARTIFACT_IO": "local"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        held = json.loads((out / LEASE_NAME).read_text())
        capsys.readouterr()
        assert main([*as_cli_args(small_job), "run"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"output {out} is in use by run {held['run']} (annotate, host " in err
        assert f"pid {holder.pid}, started " in err and "wait for it to finish, or stop it" in err
        assert _files(out) == before  # nothing written or deleted
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: same host, pid gone, so the rerun takes over at once and resumes.
    assert json.loads((out / LEASE_NAME).read_text())["run"] == held["run"]
    started = time.monotonic()
    summary = Job(spark, load_config(None, small_job)).annotate()
    assert summary["units_resumed"] == summary["units"] == 2 and summary["scored_rows"] == 40
    assert time.monotonic() - started < lease_module.STALE_SECONDS
    assert not (out / LEASE_NAME).exists()


def test_silent_lease_from_another_host_is_taken_over(spark, small_job, tmp_path):
    out = tmp_path / "out"
    _forged(out, heartbeat_age=2 * lease_module.STALE_SECONDS)
    summary = Job(spark, load_config(None, small_job)).run()
    assert summary["annotate"]["scored_rows"] == 40 and summary["filter"]["scored_rows"] == 40
    assert not (out / LEASE_NAME).exists()


def test_fresh_lease_from_another_host_refuses_a_stage(spark, small_job, tmp_path):
    out = tmp_path / "out"
    _forged(out, heartbeat_age=1, machine="h1 pid:[1]")
    with pytest.raises(InputError, match=r"in use by run 0ther \(annotate, host h1 pid 4242, .*last heartbeat 1 s ago\)"):
        Job(spark, load_config(None, small_job)).thresholds()
    assert sorted(p.name for p in out.iterdir()) == [LEASE_NAME]  # still the other run's, nothing else written


# -- the lease itself, without Spark ----------------------------------------------------------
@pytest.fixture()
def local_io(monkeypatch):
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", "local")


def test_reentrant_and_released(local_io, tmp_path):
    out = tmp_path / "out"
    with OutputLease(None, str(out), "run", settle=0) as outer:
        with OutputLease(None, str(out), "annotate", settle=0) as inner:  # run() calling annotate(): joined
            assert inner is outer
        assert (out / LEASE_NAME).exists()  # still held by the outer stage
    assert not out.exists()  # the folder was made only for the lease


def test_a_claim_overwritten_while_settling_is_not_held(local_io, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def rival_writes(_seconds):  # the other claimant's write lands during our settle time
        _forged(out, heartbeat_age=0, machine="h2")

    monkeypatch.setattr(lease_module.time, "sleep", rival_writes)
    with pytest.raises(InputError, match=r"in use by run 0ther \(annotate, host h2"):
        with OutputLease(None, str(out), "annotate"):
            pass
    assert json.loads((out / LEASE_NAME).read_text())["run"] == "0ther"  # the winner's lease is left alone


def test_heartbeat_notices_a_takeover(local_io, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="was taken over by run 0ther"):
        with OutputLease(None, str(out), "annotate", heartbeat=0.05, settle=0):
            _forged(out, heartbeat_age=0)
            time.sleep(0.5)
    assert json.loads((out / LEASE_NAME).read_text())["run"] == "0ther"


def test_lease_beside_a_folder_the_stage_replaces():
    assert lease_path("/x/out/embeddings", beside=True) == "/x/out/jql_lease.embeddings.json"
    assert lease_path("s3://b/judged/", beside=True) == "s3://b/jql_lease.judged.json"
    assert lease_path("out", beside=True) == "jql_lease.out.json"
    assert lease_path("/x/out") == "/x/out/jql_lease.json"
