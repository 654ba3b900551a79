"""Spark Connect: the job, the report and langid through ``SPARK_REMOTE``, as on Databricks shared compute.

The client is a separate Python process (a Connect client needs no JVM); the server is
the test run's own SparkSession with the Spark Connect plugin (see ``conftest.spark``),
so the suite still starts one JVM. Small artifacts go the Spark route here
(``SPARK_JQL_ARTIFACT_IO=spark``), as they would on s3://, abfss:// or dbfs:/ paths.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.thresholds import Thresholds

from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]

CLIENT = textwrap.dedent(
    """
    import json, sys
    from spark_jql.cli import run_job
    from spark_jql.spark.session import is_connect
    from pyspark.sql import SparkSession

    job_args, report_args, langid_args, stream_args = json.loads(sys.argv[1])
    results = {"run": run_job(job_args + ["run"]), "report": run_job(report_args), "langid": run_job(langid_args),
               "stream": run_job(stream_args)}
    results["connect"] = is_connect(SparkSession.builder.getOrCreate())
    print("RESULTS " + json.dumps(results, default=str))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
def test_job_report_and_langid_over_spark_connect(spark, connect_url, gte_bundle, tmp_path, monkeypatch):
    inputs = write_jsonl(generate_documents(160, seed=21), tmp_path / "in", files=2)
    out = tmp_path / "out"
    overrides = job_overrides(gte_bundle, [str(tmp_path / "in" / "*.jsonl")], out, **{"thresholds.min_docs": "20"})
    job_args = ["-c", str(REPO / "conf" / "local.yaml"), *as_cli_args(overrides)]  # its spark.master is ignored
    report_args = [*job_args, "report"]
    langid_args = [*job_args, "langid", "--output", str(tmp_path / "langid"), "--languages", "eng,deu,spa,fra,rus",
                   "--if-exists", "replace"]
    streamed = tmp_path / "streamed"  # the same input as a stream, split by the run's frozen thresholds
    stream_args = ["-c", str(REPO / "conf" / "local.yaml"),
                   *as_cli_args(job_overrides(gte_bundle, [str(tmp_path / "in")], streamed, **{"thresholds.min_docs": "20"})),
                   "stream", "--thresholds", str(out / "thresholds.json"), "--checkpoint", str(tmp_path / "checkpoint")]
    env = {**os.environ, "SPARK_REMOTE": connect_url, "SPARK_JQL_ARTIFACT_IO": "spark",
           "SPARK_JQL_PROGRESS_INTERVAL": "0.5", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps([job_args, report_args, langid_args, stream_args])],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert results["connect"] is True

    run = results["run"]
    assert run["annotate"]["input_rows"] == run["annotate"]["scored_rows"] == 160
    assert run["annotate"]["scorer_builds"] is None  # no accumulators on Connect
    assert run["filter"]["kept_rows"] + run["filter"]["dropped_rows"] == 160
    assert spark.read.parquet(str(out / "filtered")).count() == run["filter"]["kept_rows"]
    stream = results["stream"]  # foreachBatch runs on the Connect server; the counts come back through files
    assert stream["rows"] == stream["kept_rows"] + stream["dropped_rows"] == 160
    assert spark.read.parquet(str(streamed / "filtered")).count() == stream["kept_rows"]
    assert spark.read.parquet(str(streamed / "dropped")).count() == stream["dropped_rows"]

    # Artifacts went through Spark and, the path being visible here, were renamed to single files.
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", "spark")
    from spark_jql.spark.storage import read_text, read_texts

    for name in ["thresholds.json", "summary.json", "report.html", "report.json"]:
        assert (out / name).is_file(), name
    assert results["report"]["report"] == str(out / "report.html")
    assert run["thresholds"]["file"] == str(out / "thresholds.json")  # where the file is, in the printed summary
    assert Thresholds.from_json(read_text(spark, str(out / "thresholds.json"))).global_documents == 160
    assert json.loads(read_text(spark, str(out / "summary.json"))) == run
    assert set(read_texts(spark, str(out / "scored" / "_jql_units"))) == {"manifest.json", "unit-00000.json"}
    assert "<html" in read_text(spark, str(out / "report.html")).lower()

    langid = spark.read.parquet(str(tmp_path / "langid"))
    assert langid.count() == 160 and {"language", "language_script", "language_score"} <= set(langid.columns)
    assert results["langid"]

    # Progress at the default verbosity, from Connect's progress messages (no status tracker there).
    lines = [line for line in proc.stderr.splitlines() if "spark_jql.spark.progress" in line]
    assert any("/ 160 docs" in line and "tasks " in line and "ETA" in line for line in lines), proc.stderr[-3000:]
    assert any("annotate: done, 160 docs" in line for line in lines), lines
    assert len(inputs) == 2


SESSION_CLIENT = textwrap.dedent(
    """
    import json, os, sys
    from pyspark.sql import SparkSession
    from spark_jql import paths
    from spark_jql.spark import storage
    from spark_jql.spark.session import connect_host, is_connect

    url, folder = sys.argv[1:]
    assert "SPARK_REMOTE" not in os.environ
    spark = SparkSession.builder.remote(url).getOrCreate()  # as a notebook does, no environment variable
    found = {"connect": is_connect(spark), "host": connect_host(spark)}
    found["visible"] = storage.write_text(spark, "file://" + folder + "/visible.json", '{"a": 1}')
    paths.local_view = lambda path: None  # a client that cannot see the cluster's filesystem
    found["hidden"] = storage.write_text(spark, "file://" + folder + "/hidden.json", '{"b": 2}')
    found["hidden_text"] = storage.read_text(spark, "file://" + folder + "/hidden.json")
    print("RESULTS " + json.dumps(found))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
def test_a_session_built_with_remote_is_connect_and_writes_single_files(connect_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env.update(PYTHONPATH=str(REPO), SPARK_JQL_ARTIFACT_IO="spark")  # as for s3://, abfss:// or dbfs:/ paths
    proc = subprocess.run([sys.executable, "-c", SESSION_CLIENT, connect_url, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert found["connect"] is True and found["host"] == "127.0.0.1"
    # Seen from here: Spark's folder replaced by its one part file, at the path asked for.
    assert found["visible"].endswith("/visible.json") and (tmp_path / "visible.json").read_text() == '{"a": 1}'
    # Not seen from here: the folder stays, and the path returned is the file to open.
    part = Path(found["hidden"].replace("file:", "", 1))
    assert (tmp_path / "hidden.json").is_dir() and part.parent == tmp_path / "hidden.json" and part.is_file()
    assert found["hidden_text"] == '{"b": 2}'


JUDGE_CLIENT = textwrap.dedent(
    """
    import json, sys
    from spark_jql.cli import run_job
    from spark_jql.errors import SparkJQLError

    runs, found = json.loads(sys.argv[1]), []
    for args in runs:
        try:
            found.append(run_job(args)["rows"])
        except SparkJQLError as err:
            found.append("refused: " + str(err))
    print("RESULTS " + json.dumps(found))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
def test_judge_over_spark_connect_keeps_labels_and_retries_into_the_root(spark, connect_url, tmp_path):
    """ml-filter preset (double scores, per-language prompts), a refused rerun with another model, the retry."""
    import yaml

    from spark_jql.devtools.fake_judge import FakeJudgeServer

    rows = [{"text": f"page {i} at level {i % 6}", "lang": "deu"} for i in range(10)] + [{"text": "DECIMAL page", "lang": "fra"},
                                                                                        {"text": "BROKEN page", "lang": "fra"}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = {**os.environ, "SPARK_REMOTE": connect_url, "SPARK_JQL_ARTIFACT_IO": "spark", "PYTHONPATH": str(REPO)}
    with FakeJudgeServer() as server:
        def judges(model: str) -> str:
            path = tmp_path / f"{model}.yaml"
            path.write_text(yaml.safe_dump({"judges": [{"name": "j", "base_url": server.url, "model": model}],
                                            "preset": "ml-filter", "truncation": "chars", "max_retries": 0,
                                            "min_requests": 100, "language_column": "lang"}))
            return str(path)

        base = ["--set", f"io.input=[{tmp_path / 'docs.jsonl'}]", "--set", f"io.output={tmp_path / 'run'}"]
        retry = ["--set", f"io.input=[{tmp_path / 'run' / 'judged'}]", "--set", f"io.output={tmp_path / 'run'}"]
        runs = [base + ["judge", "--judge-config", judges("a")], base + ["judge", "--judge-config", judges("b")],
                retry + ["judge", "--judge-config", judges("a"), "--retry-failed", "--output", str(tmp_path / "run" / "retried")]]
        proc = subprocess.run([sys.executable, "-c", JUDGE_CLIENT, json.dumps(runs)], capture_output=True, text=True,
                              env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    first, changed, retried = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert first == retried == len(rows)
    assert changed.startswith("refused: ") and 'judge.judges.0.model ("a" -> "b") changed' in changed
    judged = {r["text"]: r for r in spark.read.parquet(str(tmp_path / "run" / "judged")).collect()}
    assert judged["DECIMAL page"]["judge_j"] == 3.5 and judged["page 3 at level 3"]["judge_j"] == 3.0
    assert judged["DECIMAL page"]["judge_j_prompt"].startswith("ml-filter/fr ")
    assert judged["page 3 at level 3"]["judge_j_model"] == f"a @ {server.url}"
