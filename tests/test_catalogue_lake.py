"""Catalogue: a table format whose connector the session lacks is one line before any work; a present one works.

Both paths are real: on a leg where a connector cannot run (Spark 4.3 today, .ci/connector-jars.txt) Delta and
Iceberg really are missing; where both are loaded (Spark 3.5 with ``.ci/fetch-jars``), Hudi -- never installed
here -- is the missing one, and the loaded connectors pass the same check (tests/test_lake_tables.py runs them).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jql.cli import main
from spark_jql.config import ConfigError, load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.spark import preflight

from .catalogue import case
from .conftest import REPO, as_cli_args, job_overrides, ready_connectors, require_connector

TABLES = {"io.output_tables.filtered": "lake.jql.kept_x", "io.output_tables.dropped": "lake.jql.dropped_x"}


def _missing_formats() -> list[str]:
    return [f for f in ("delta", "iceberg") if f not in ready_connectors()] or ["hudi"]


def _sets(fmt: str, where: str) -> dict[str, str]:
    if where == "input":
        return {"io.input_format": fmt}
    return {"io.output_format": fmt, **(TABLES if fmt == "iceberg" else {})}


def _refused(capsys, args: list[str], out: Path) -> str:
    code = main([*args, "run"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("spark-jql: error: "), err
    assert not (out / "scored").exists()  # before any work
    return err


@case("`io.output_format: delta` (or iceberg) or `io.input_format: delta` without the connector in the session",
      "exit 2 before any work: `io.output_format 'delta' is not a data source of this Spark session ([DATA_SOURCE_NOT_FOUND] "
      "Failed to find the data source: delta.): add the delta-spark package for this Spark ...`; with it, the job runs")
def test_missing_connector_is_one_line_before_any_work(spark, gte_bundle, tmp_path, capsys):
    docs = write_jsonl(generate_documents(12, seed=4), tmp_path / "docs.jsonl")[0]
    for fmt in _missing_formats():
        for where in ("output", "input"):
            out = tmp_path / f"{fmt}_{where}"
            err = _refused(capsys, as_cli_args(job_overrides(gte_bundle, [str(docs)], out, **_sets(fmt, where))), out)
            assert f"io.{where}_format {fmt!r} is not a data source of this Spark session" in err
            assert f"[DATA_SOURCE_NOT_FOUND] Failed to find the data source: {fmt}" in err  # Spark's cause, kept
            assert "An error occurred while calling" not in err


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_present_connector_passes_the_same_check(spark, gte_bundle, tmp_path, fmt):
    require_connector(fmt)
    docs = write_jsonl(generate_documents(12, seed=4), tmp_path / "docs.jsonl")[0]
    for where in ("output", "input"):
        config = load_config(None, job_overrides(gte_bundle, [str(docs)], tmp_path / "out", **_sets(fmt, where)))
        preflight.data_sources(spark, config)  # resolves the real connector: no error


CLIENT = """
import sys
from spark_jql.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
def test_missing_connector_is_one_line_on_spark_connect(spark, connect_url, gte_bundle, tmp_path):
    fmt = _missing_formats()[0]
    docs = write_jsonl(generate_documents(12, seed=4), tmp_path / "docs.jsonl")[0]
    for where in ("output", "input"):
        out = tmp_path / f"out_{where}"
        args = as_cli_args(job_overrides(gte_bundle, [str(docs)], out, **_sets(fmt, where))) + ["run"]
        env = {**os.environ, "SPARK_REMOTE": connect_url, "SPARK_JQL_ARTIFACT_IO": "spark", "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", CLIENT, *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)
        err = proc.stderr.strip()
        assert proc.returncode == 2, err[-3000:]
        assert err.splitlines()[-1].startswith("spark-jql: error: ") and "Traceback" not in err, err[-3000:]
        assert f"io.{where}_format {fmt!r} is not a data source of this Spark session ([DATA_SOURCE_NOT_FOUND]" in err
        assert not (out / "scored").exists()


def test_iceberg_output_needs_output_tables():
    with pytest.raises(ConfigError, match="io.output_format 'iceberg' writes catalog tables only"):
        load_config(None, ["io.output_format=iceberg", "io.output_tables.filtered=lake.db.kept"])
    tables = load_config(None, ["io.output_format=iceberg", "io.output_tables.filtered=lake.db.kept", "filter.write_dropped=false"])
    assert tables.io.output_tables.filtered == "lake.db.kept"
