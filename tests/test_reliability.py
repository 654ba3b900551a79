"""Dirty input, broken files, interrupted runs and task retries: nothing lost, nothing duplicated."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_jql import schema
from spark_jql.cli import main
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.errors import InputError
from spark_jql.spark.job import Job

from .conftest import as_cli_args, job_overrides


def _scores(spark, output: Path) -> dict:
    rows = spark.read.parquet(str(output / "scored")).select("id", schema.AGGREGATE, schema.TOKENS).collect()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate rows"
    return {r["id"]: (r[schema.AGGREGATE], r[schema.TOKENS]) for r in rows}


def test_dirty_text_is_scored_not_dropped(spark, gte_bundle, tmp_path):
    """Invalid UTF-8, lone surrogates, control characters and a 5 MB document in JSON lines."""
    lines = [
        b'{"id": "bad-utf8", "language": "deu", "text": "Gr\xfc\xdfe aus \xff\xfe K\xc3\xb6ln"}',
        b'{"id": "surrogate", "language": "deu", "text": "lone \\ud800 surrogate and \\udfff another"}',
        b'{"id": "control", "language": "deu", "text": "null\\u0000byte \\u0007bell \\u001b[31m escape\\r\\n"}',
        json.dumps({"id": "huge", "language": "deu", "text": "Ein langer Satz. " * 310_000}).encode(),
        b'{"id": "empty", "language": "deu", "text": ""}',
        b'{"id": "missing", "language": "deu"}',
    ]
    (tmp_path / "dirty.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert len(lines[3]) > 5_000_000
    cfg = load_config(None, job_overrides(gte_bundle, [str(tmp_path / "dirty.jsonl")], tmp_path / "out",
                                     **{"columns.language": "language"}))
    summary = Job(spark, cfg).annotate()
    assert summary["input_rows"] == summary["scored_rows"] == 6
    rows = {r["id"]: r for r in spark.read.parquet(str(tmp_path / "out" / "scored")).collect()}
    for doc in ("bad-utf8", "surrogate", "control", "huge"):
        assert rows[doc][schema.AGGREGATE] is not None and rows[doc][schema.TOKENS] > 2, doc
    assert rows["huge"][schema.TRUNCATED] is True and rows["huge"][schema.TOKENS] == 8192
    assert "\ufffd" in rows["bad-utf8"]["text"]  # invalid bytes become U+FFFD on read, the row survives
    for doc in ("empty", "missing"):
        assert rows[doc][schema.AGGREGATE] is None and rows[doc][schema.TOKENS] == 0


@pytest.fixture()
def parquet_inputs(spark, tmp_path) -> tuple[Path, list[dict]]:
    docs = generate_documents(90, seed=5)
    folder = tmp_path / "in"
    for k in range(3):
        part = docs[k * 30 : (k + 1) * 30]
        spark.createDataFrame(part).coalesce(1).write.parquet(str(folder / f"batch{k}"))
    files = sorted(folder.glob("batch*/*.parquet"))
    for k, f in enumerate(files):
        f.rename(folder / f"part-{k}.parquet")
    return folder, docs


def test_corrupt_parquet_fails_naming_the_file_or_is_skipped(spark, gte_bundle, parquet_inputs, tmp_path):
    folder, docs = parquet_inputs
    corrupt = folder / "part-1.parquet"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated: footer gone
    inputs = [str(folder / "*.parquet")]
    cfg = load_config(None, job_overrides(gte_bundle, inputs, tmp_path / "fail"))
    with pytest.raises(InputError, match=r"part-1\.parquet"):
        Job(spark, cfg).annotate()

    cfg = load_config(None, job_overrides(gte_bundle, inputs, tmp_path / "skip", **{"io.on_bad_file": "skip"}))
    summary = Job(spark, cfg).annotate()
    assert [s["file"].rsplit("/", 1)[-1] for s in summary["skipped_files"]] == ["part-1.parquet"]
    assert summary["input_rows"] == summary["scored_rows"] == 60
    ids = set(_scores(spark, tmp_path / "skip"))
    assert ids == {d["id"] for d in docs[:30] + docs[60:]}
    written = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert written["annotate"]["skipped_files"][0]["error"]


def test_truncated_gzip_and_empty_file(spark, gte_bundle, tmp_path):
    good = write_jsonl(generate_documents(20, seed=6), tmp_path / "a.jsonl")[0]
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(good.read_bytes()))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(good.read_bytes())[:-40])  # cut mid-stream
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(b""))
    cfg = load_config(None, job_overrides(gte_bundle, [str(tmp_path / "*.jsonl.gz")], tmp_path / "out",
                                     **{"io.on_bad_file": "skip"}))
    summary = Job(spark, cfg).annotate()
    assert [s["file"].rsplit("/", 1)[-1] for s in summary["skipped_files"]] == ["b.jsonl.gz"], summary["skipped_files"]
    assert summary["scored_rows"] == 20


def test_rerun_is_deterministic_and_resumes(spark, gte_bundle, tmp_path):
    files = write_jsonl(generate_documents(120, seed=8), tmp_path / "in", files=4)
    args = job_overrides(gte_bundle, [str(tmp_path / "in" / "*.jsonl")], tmp_path / "out", **{"io.files_per_unit": "1"})
    first = Job(spark, load_config(None, args)).annotate()
    before = _scores(spark, tmp_path / "out")
    # Lose one unit's marker, as if the run died after writing it: only that unit is redone.
    (tmp_path / "out" / "scored" / "_jql_units" / "unit-00002.json").unlink()
    second = Job(spark, load_config(None, args)).annotate()
    assert (first["units_resumed"], second["units_resumed"]) == (0, 3)
    assert _scores(spark, tmp_path / "out") == before
    # Different inputs: the old units are not reused.
    files[0].unlink()
    third = Job(spark, load_config(None, args)).annotate()
    assert third["units_resumed"] == 0 and third["scored_rows"] == 90


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(spark, gte_bundle, tmp_path):
    write_jsonl(generate_documents(240, seed=9), tmp_path / "in", files=6)
    inputs = [str(tmp_path / "in" / "*.jsonl")]
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    # The same slot count for all three runs: partitions (and so micro-batches) are planned per slot, and batch
    # neighbours move a score by fp32 rounding; with one plan the result must be bit-identical.
    plan = {"io.files_per_unit": "1", "spark.slots": "2"}
    args = job_overrides(gte_bundle, inputs, killed_out, **plan, **{"spark.master": "local[1]"})
    cmd = [sys.executable, "-m", "spark_jql.cli", *as_cli_args(args), "annotate"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    markers = killed_out / "scored" / "_jql_units"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(markers.glob("unit-*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM die mid-run
    proc.wait()
    done = len(list(markers.glob("unit-*.json")))
    assert 2 <= done < 6, f"kill landed after {done} units"

    resumed = Job(spark, load_config(None, args[:-1] + ["spark.master=local[2]"])).annotate()
    assert resumed["units_resumed"] == done and resumed["scored_rows"] == 240
    Job(spark, load_config(None, job_overrides(gte_bundle, inputs, clean_out, **plan))).annotate()
    assert _scores(spark, killed_out) == _scores(spark, clean_out)


def test_output_mode_error_refuses_foreign_output(spark, gte_bundle, tmp_path):
    write_jsonl(generate_documents(10, seed=1), tmp_path / "a.jsonl")
    write_jsonl(generate_documents(10, seed=2), tmp_path / "b.jsonl")
    out = tmp_path / "out"
    Job(spark, load_config(None, job_overrides(gte_bundle, [str(tmp_path / "a.jsonl")], out))).annotate()
    other = job_overrides(gte_bundle, [str(tmp_path / "b.jsonl")], out, **{"io.mode": "error"})
    assert main(as_cli_args(other) + ["annotate"]) == 2
