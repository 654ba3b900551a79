"""The spark-jql job through its real entry points: CLI stages, outputs, accounting, local-cluster, submit.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jql import schema
from spark_jql.cli import main
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.thresholds import Thresholds

from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]


def _overrides(bundle: dict, inputs: str, output: Path) -> list[str]:
    return as_cli_args(job_overrides(bundle, [inputs], output, **{"thresholds.min_docs": "20", "spark.arrow_batch_size": "50"}))


@pytest.fixture(scope="module")
def gz_input(tmp_path_factory) -> Path:
    """Generated docs as three gzipped JSON-lines files."""
    import gzip

    folder = tmp_path_factory.mktemp("input")
    plain = write_jsonl(generate_documents(240, seed=11), folder / "plain", files=3)
    for f in plain:
        (folder / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    return folder


def test_cli_run_writes_every_output(spark, gte_bundle, gz_input, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["-c", str(REPO / "conf" / "local.yaml"), *_overrides(gte_bundle, str(gz_input / "*.jsonl.gz"), out)]
    assert main([*args, "run"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    human = capsys.readouterr().out.splitlines()  # a short summary for people, the JSON in summary.json
    assert len(human) < 30
    assert any(f"kept {summary['filter']['kept_rows']} of 240" in line for line in human)
    assert any(line.split() == ["filtered", str(out / "filtered")] for line in human)
    assert human[-1].startswith("next: spark-jql -c ") and human[-1].endswith(" report")
    assert summary["annotate"]["input_rows"] == summary["annotate"]["scored_rows"] == 240
    f = summary["filter"]
    assert f["kept_rows"] + f["dropped_rows"] == f["scored_rows"] == 240
    assert sum(r["documents"] for r in f["per_language"]) == 240

    scored = spark.read.parquet(str(out / "scored"))
    stats = spark.read.parquet(str(out / "stats"))
    assert scored.count() == stats.count() == 240
    assert "text" in scored.columns and "text" not in stats.columns
    assert set(stats.columns) == set(scored.columns) - {"text"}
    th = Thresholds.from_json((out / "thresholds.json").read_text())
    assert th.language_columns == ["language", "language_script"]
    kept = spark.read.parquet(str(out / "filtered"))
    dropped = spark.read.parquet(str(out / "dropped"))
    assert kept.count() == f["kept_rows"] and dropped.count() == f["dropped_rows"]
    for r in kept.select(schema.AGGREGATE, schema.THRESHOLD).collect():
        assert r[schema.AGGREGATE] >= r[schema.THRESHOLD]
    for r in dropped.select(schema.AGGREGATE, schema.THRESHOLD).collect():
        assert r[schema.AGGREGATE] < r[schema.THRESHOLD]

    # Stages run alone read the scored output back: filter again at 0.7 with the saved thresholds.
    assert main([*args, "--set", "filter.quantile=0.7", "filter", "--json"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == again
    assert again["annotate"] == summary["annotate"]
    assert again["filter"]["quantile"] == 0.7
    assert again["filter"]["kept_rows"] <= f["kept_rows"]


def test_cli_config_errors_exit_2(capsys):
    assert main(["--set", "scorer.embedder.nope=1", "validate"]) == 2
    assert "scorer.embedder.nope: unknown key" in capsys.readouterr().err
    assert main(["--set", "thresholds.quantiles=[0.6, 1.5]", "validate"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
    assert main(["--set", "spark.arrow_batch_size=many", "validate"]) == 2
    assert "spark.arrow_batch_size" in capsys.readouterr().err


def test_cli_missing_input_is_a_clear_error(spark, gte_bundle, tmp_path, capsys):
    args = _overrides(gte_bundle, str(tmp_path / "nothing-*.parquet"), tmp_path / "out")
    assert main([*args, "annotate"]) == 2
    assert "matches no file" in capsys.readouterr().err


@pytest.mark.slow
def test_local_cluster_run_through_entry_point(gte_bundle, gz_input, tmp_path):
    """Separate executor JVMs (local-cluster) and a fresh driver process, as spark-submit would run it."""
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "spark_jql.cli",
        *_overrides(gte_bundle, str(gz_input / "*.jsonl.gz"), out),
        "--set", "spark.master=local-cluster[2,1,1024]",
        "--set", "spark.conf={spark.sql.shuffle.partitions: 4}",
        "run",
    ]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotate"]["scored_rows"] == 240
    assert 1 <= summary["annotate"]["scorer_builds"] <= 2  # one per executor's Python worker
    assert summary["filter"]["kept_rows"] + summary["filter"]["dropped_rows"] == 240


def test_submit_sh_dry_run(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "MASTER": "yarn"}
    proc = subprocess.run(
        ["bash", str(REPO / "submit.sh"), str(REPO / "conf" / "gpu-cluster.yaml"), "run", "--set", "filter.quantile=0.7"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout
    assert "--master yarn" in line and "--py-files" in line and "spark_jql.zip" in line
    assert "--conf spark.task.resource.gpu.amount=1" in line
    assert line.rstrip().endswith("--set filter.quantile=0.7 run")
    bad = subprocess.run(
        ["bash", str(REPO / "submit.sh"), str(REPO / "conf" / "gpu-cluster.yaml"), "run", "--set", "filter.quantile=0.9"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode != 0 and "filter.quantile 0.9" in bad.stderr
