"""Catalogue: the error paths on Spark Connect (Databricks shared/serverless compute, Databricks Connect).

The client is a separate Python process (see tests/test_connect.py); the server is the test run's own session.
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

from .catalogue import case
from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]

CLIENT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from pyspark.sql.connect.readwriter import DataFrameWriter
    from spark_jql.cli import main

    refused = []
    original = DataFrameWriter.mode

    def mode(self, save_mode):  # as Databricks shared compute answers: [UNSUPPORTED_OPERATION] errorifexists ...
        if str(save_mode).lower() in ("error", "errorifexists"):
            refused.append(save_mode)
            raise RuntimeError("[UNSUPPORTED_OPERATION] errorifexists is not supported")
        return original(self, save_mode)

    DataFrameWriter.mode = mode
    results = {}
    for name, args in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            results[name] = [main(args), err.getvalue().strip().splitlines()]
    results["refused_modes"] = refused
    print("RESULTS " + json.dumps(results))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
@case("`io.mode: error` (every cluster recipe's setting) on Spark Connect, whose Databricks servers refuse the "
      "`errorifexists` save mode; and a missing `io.input_table` on Connect (where `spark.table()` is lazy)",
      "the run completes: outputs are checked for existence by spark-jql and written with `overwrite`, never "
      "`errorifexists`; a second run is exit 2 `<out>/filtered already exists (io.mode=error) ...`; a missing table is "
      "the classic session's one line, exit 2: `cannot read table 'no_such_docs': [TABLE_OR_VIEW_NOT_FOUND] ...`")
def test_mode_error_and_missing_table_on_connect(spark, connect_url, gte_bundle, tmp_path):
    docs = write_jsonl(generate_documents(40, seed=10), tmp_path / "in" / "docs.jsonl")[0]
    out = tmp_path / "out"
    job = [*as_cli_args(job_overrides(gte_bundle, [str(docs)], out, **{"io.mode": "error"})), "run"]
    missing = [*as_cli_args(job_overrides(gte_bundle, [], tmp_path / "out2", **{"io.input_table": "no_such_docs"})), "run"]
    env = {**os.environ, "SPARK_REMOTE": connect_url, "SPARK_JQL_ARTIFACT_IO": "spark", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps({"first": job, "again": job, "missing": missing})],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert results["refused_modes"] == []  # no errorifexists write was attempted
    code, err = results["first"]
    assert code == 0, err
    assert spark.read.parquet(str(out / "filtered")).count() + spark.read.parquet(str(out / "dropped")).count() == 40
    code, err = results["again"]
    assert code == 2 and len(err) == 1 and "already exists (io.mode=error)" in err[0], err
    code, err = results["missing"]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("spark-jql: error: cannot read table 'no_such_docs': ") and "NOT_FOUND" in err[0], err
    assert not (tmp_path / "out2" / "scored").exists()
