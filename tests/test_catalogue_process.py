"""Catalogue: the CLI as a process -- a failed Spark job, Ctrl-C and SIGTERM -- and damaged run state on disk.

The process cases start ``python -m spark_jql.cli`` (a fresh JVM each, so they are few and combined); the
damaged-state cases run the CLI in this process on the shared session.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spark_jql.cli import main
from spark_jql.devtools.sample_data import generate_documents, write_jsonl

from .catalogue import case
from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "SPARK_JQL_PROGRESS_INTERVAL": "3600", **env}
    environ.pop("SPARK_REMOTE", None)
    return subprocess.Popen([sys.executable, "-m", "spark_jql.cli", *args], cwd=tmp_path, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _no_spark_noise(stderr: str) -> None:
    assert "Traceback" not in stderr and "\tat org.apache" not in stderr and " ERROR " not in stderr, stderr[-3000:]
    assert len(stderr.strip().splitlines()) <= 12, stderr[-3000:]


@case("a Spark job fails (a bad record, a task error) and spark-jql prints its one line",
      "the console holds the one line, not Spark's ~240 lines of ERROR logs and stack traces: the CLI sends Spark's "
      "own log (log4j) to a file (`SPARK_JQL_SPARK_LOG`, default `<tmp>/spark_jql-<pid>.log`; `-vv` keeps it on the console)")
def test_failed_spark_job_prints_only_the_one_line(gte_bundle, tmp_path):
    lines = [json.dumps(d) for d in generate_documents(30, seed=6)]
    lines[17] = json.dumps({"id": "17", "text": ["not", "a", "string"], "language": "deu"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs.jsonl").write_text("\n".join(lines) + "\n")
    args = as_cli_args(job_overrides(gte_bundle, [str(tmp_path / "in" / "docs.jsonl")], tmp_path / "out",
                                     **{"spark.master": "local[1]"}))
    proc = _cli([*args, "annotate"], tmp_path, SPARK_JQL_SPARK_LOG=str(tmp_path / "spark.log"))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2, stderr[-3000:]
    _no_spark_noise(stderr)
    errors = [line for line in stderr.splitlines() if line.startswith("spark-jql: error: ")]
    assert errors == [stderr.strip().splitlines()[-1]]
    assert "docs.jsonl: line 18: text column 'text' holds a JSON value that is not a string" in errors[0]
    logged = (tmp_path / "spark.log").read_text()
    # Spark's own lines are kept, in the file: its task failure and the query's error with the record's file
    assert "ERROR TaskSetManager" in logged and "spark_jql bad record in" in logged and "docs.jsonl" in logged


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 400) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.2)


@case("Ctrl-C (SIGINT) or SIGTERM during a run",
      "one line, exit 130 / 143: `spark-jql: interrupted (SIGINT); annotate: 1 of 4 units of <out>/scored committed; "
      "the rerun resumes from unit 1; rerun the same command to resume`; the running Spark jobs are cancelled, the "
      "output lease released, and the rerun resumes exactly (no document lost or scored twice)")
def test_interrupt_and_terminate_print_one_line_and_resume(gte_bundle, tmp_path):
    write_jsonl(generate_documents(60, seed=7), tmp_path / "in", files=4)
    out = tmp_path / "out"
    args = [*as_cli_args(job_overrides(gte_bundle, [str(tmp_path / "in" / "*.jsonl")], out,
                                       **{"io.files_per_unit": "1", "io.units_in_flight": "1",
                                          "spark.master": "local[1]"})), "annotate"]
    (tmp_path / "device").mkdir()
    slow = {"SPARK_JQL_SIMULATED_DEVICE": f"4,{tmp_path / 'device'}"}  # about 2 s of "GPU" per unit
    markers = out / "scored" / "_jql_units"

    for sig, name, after in [(signal.SIGINT, "SIGINT", 0), (signal.SIGTERM, "SIGTERM", 1)]:
        proc = _cli(args, tmp_path, **slow)
        _wait_for(markers / f"unit-{after:05d}.json", proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 128 + sig, stderr[-3000:]
        _no_spark_noise(stderr)
        last = stderr.strip().splitlines()[-1]
        assert last.startswith(f"spark-jql: interrupted ({name}); annotate: ") and last.endswith(
            "; rerun the same command to resume"), last
        committed = len(list(markers.glob("unit-*.json")))
        assert f"annotate: {committed} of 4 units of {out / 'scored'} committed" in last
        assert not (out / "jql_lease.json").exists()  # released: the rerun is not refused

    proc = _cli([*args, "--json"], tmp_path, **slow)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["annotate"]["units_resumed"] == committed >= 2
    assert summary["annotate"]["input_rows"] == summary["annotate"]["scored_rows"] == 60


@case("a truncated or damaged unit marker, resume manifest, output lease or summary.json (a run killed while writing it)",
      "never a JSON traceback: a marker -> the unit is scored again (`commit marker <f> is truncated or unreadable`); "
      "the manifest -> start over naming it, or with io.mode=error exit 2 `output <out>/scored already exists and cannot "
      "be resumed: its manifest <f> is truncated or unreadable (...)`; the lease -> treated as free, named; summary -> rewritten")
def test_damaged_run_state_is_named_never_a_traceback(spark, gte_bundle, tmp_path, capsys, caplog):
    write_jsonl(generate_documents(40, seed=8), tmp_path / "in", files=2)
    out = tmp_path / "out"
    args = as_cli_args(job_overrides(gte_bundle, [str(tmp_path / "in" / "*.jsonl")], out, **{"io.files_per_unit": "1"}))
    assert main([*args, "annotate"]) == 0
    capsys.readouterr()
    meta = out / "scored" / "_jql_units"
    (meta / "unit-00000.json").write_text('{"unit": 0, "files": ["a')
    (meta / "unit-00001.json").write_text("[]")
    (out / "jql_lease.json").write_text('{"format": "spark_jql-lease')
    (out / "summary.json").write_text('{"annotate": {"input_rows": 4')
    with caplog.at_level(logging.WARNING):
        assert main([*args, "annotate", "--json"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["annotate"]["units_resumed"] == 0 and summary["annotate"]["scored_rows"] == 40
    for name in ["unit-00000.json", "unit-00001.json"]:
        assert f"commit marker {meta / name} is truncated or unreadable" in caplog.text
    assert f"lease file {out / 'jql_lease.json'} is truncated or unreadable" in caplog.text
    assert f"summary {out / 'summary.json'} is truncated or unreadable" in caplog.text
    assert spark.read.parquet(str(out / "scored")).count() == 40

    (meta / "manifest.json").write_text('{"format": "spark_jql-units-v3", "units": [[{"pa')
    assert main([*args, "--set", "io.mode=error", "annotate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"its manifest {meta / 'manifest.json'} is truncated or unreadable" in err
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main([*args, "annotate"]) == 0
    assert f"starting over in {out / 'scored'}: its manifest {meta / 'manifest.json'} is truncated" in caplog.text
    assert json.loads((out / "summary.json").read_text())["annotate"]["scored_rows"] == 40


def test_a_signal_that_surfaces_as_another_error_still_reads_as_interrupted(monkeypatch, capsys):
    """SIGTERM inside a py4j call comes back as 'Answer from Java side is empty' (then an input error): the CLI
    still prints the interrupted line and the signal's exit code, not exit 2 with the py4j message."""
    from spark_jql import cli, interrupts
    from spark_jql.errors import InputError

    def broken_by_a_signal(args):
        try:
            interrupts._raise(signal.SIGTERM, None)
        except KeyboardInterrupt:
            pass  # swallowed inside py4j
        raise InputError("cannot read json input ['x.jsonl']: Answer from Java side is empty")

    monkeypatch.setattr(cli, "_run", broken_by_a_signal)
    assert cli.main(["thresholds"]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip()
    assert err == "spark-jql: interrupted (SIGTERM); rerun the same command to resume", err
    monkeypatch.setattr(cli, "_run", lambda args: (_ for _ in ()).throw(InputError("a real error")))
    assert cli.main(["thresholds"]) == 2  # a later command without a signal: the error as it is
