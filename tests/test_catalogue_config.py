"""Catalogue: bad configuration files, overrides, recipes, tables and output paths get one line, exit 2, before work.

The CLI (``spark_jql.cli.main``) runs in this process; ``submit.sh`` and the GPU discovery script run as the
cluster would run them (bash subprocesses).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jql.cli import main
from spark_jql.devtools.sample_data import generate_documents, write_jsonl

from .catalogue import case
from .conftest import as_cli_args, job_overrides

REPO = Path(__file__).resolve().parents[1]


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("spark-jql: error: "), err
    return err


@case("invalid YAML in `-c FILE`, in `--judge-config FILE` or in a `--set key=value`",
      "exit 2 before Spark starts: `config file <f> is not valid YAML: line 3, column 7: expected ',' or ']' ...` / "
      "`--set 'io.input=[a, b': the value is not valid YAML (line 1, column 6: ...)`; a `--set` mistake is never "
      "blamed on the file (`invalid configuration (--set): ...`)")
def test_invalid_yaml_names_file_or_override_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("io:\n  input: [a\nscorer: {}\n")
    err = _one_line(capsys, main(["-c", str(bad), "validate"]))
    assert f"config file {bad} is not valid YAML: line 3, column 7: expected ',' or ']'" in err
    assert "flow sequence that starts at line 2" in err

    good = tmp_path / "good.yaml"
    good.write_text("scorer:\n  token_budget: 4096\n")
    err = _one_line(capsys, main(["-c", str(good), "--set", "io.input=[a, b", "validate"]))
    assert "--set 'io.input=[a, b': the value is not valid YAML (line 1, column 6" in err and str(good) not in err
    err = _one_line(capsys, main(["-c", str(good), "--set", "scorer.token_budget=lots", "validate"]))
    assert err.startswith("spark-jql: error: invalid configuration (--set): scorer.token_budget") and str(good) not in err

    judges = tmp_path / "judges.yaml"
    judges.write_text("judges:\n  - name: x\n    base_url: http://127.0.0.1:9/v1\n  model: m: n\n")
    err = _one_line(capsys, main(["--set", f"io.input=[{tmp_path / 'docs.jsonl'}]", "--set", f"io.output={tmp_path / 'out'}",
                                  "judge", "--judge-config", str(judges)]))
    assert f"config file {judges} is not valid YAML: line 4, column" in err
    assert not (tmp_path / "out").exists()


@case("a cluster JSON recipe (`conf/databricks-cluster.json`, `conf/emr-*.json`) given as the config (`-c`, `submit.sh`)",
      "exit 2, no traceback: `<f> is a cluster recipe (keys [...]): it is handed to Databricks or EMR ..., not to "
      "spark-jql; pass a spark-jql config such as conf/gpu-cluster.yaml ...`")
def test_cluster_recipe_as_config(capsys):
    for recipe in ["databricks-cluster.json", "emr-configurations.json", "emr-step.json"]:
        err = _one_line(capsys, main(["-c", str(REPO / "conf" / recipe), "validate"]))
        assert f"conf/{recipe} is a cluster recipe (keys [" in err and "not to spark-jql" in err
    out = subprocess.run(["bash", str(REPO / "submit.sh"), "conf/databricks-cluster.json", "run"], cwd=REPO,
                         env={**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "Traceback" not in out.stderr
    assert out.stderr.startswith("submit.sh: error: ") and "is a cluster recipe" in out.stderr


@pytest.mark.parametrize("reply", ["echo 'No devices were found'", "printf ''", "echo 'NVIDIA-SMI has failed' >&2; exit 9"])
@case("`conf/getGpusResources.sh` on a node without a working GPU (`No devices were found`, no index, nvidia-smi failing)",
      "the script exits 1 with `getGpusResources.sh: nvidia-smi reported no usable GPU index: No devices were found` "
      "(or `... lists no GPU`, `... failed: ...`) instead of advertising a ghost address: Spark refuses the executor")
def test_gpu_discovery_without_a_gpu(tmp_path, reply):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\n{reply}\n")
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(REPO / "conf" / "getGpusResources.sh")], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, timeout=30)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("getGpusResources.sh: nvidia-smi ") and len(out.stderr.splitlines()) == 1


@case("`evaluate --input` (or `rank-judges --input`) naming a file that does not exist, or JSON lines that do not parse",
      "exit 2: `input <path> does not exist` / `cannot read JSON lines <path>: Expected object or value`")
def test_evaluate_missing_input(tmp_path, capsys):
    missing = tmp_path / "nope" / "scored.jsonl"
    err = _one_line(capsys, main(["evaluate", "--input", str(missing), "--label", "score"]))
    assert err == f"spark-jql: error: input {missing} does not exist"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"score": 1}\n{not json\n')
    err = _one_line(capsys, main(["rank-judges", "--input", str(broken), "--label", "score"]))
    assert f"cannot read JSON lines {broken}: " in err


@pytest.fixture(scope="module")
def docs_table(spark):
    """A catalog table of 20 documents in the test warehouse's default database."""
    spark.createDataFrame(generate_documents(20, seed=4)).write.mode("overwrite").saveAsTable("catalogue_docs")
    return "catalogue_docs"


@case("an output table that is the input table (`io.output_tables.filtered: <io.input_table>`), or two output tables "
      "that are one (names compared as Spark resolves them: current catalog and database, case, backticks)",
      "exit 2 before any work: `io.output_tables.filtered='spark_catalog.default.CATALOGUE_DOCS' is the input table "
      "(io.input_table='catalogue_docs'): writing it would replace the documents being read ...`; the table is untouched")
def test_output_table_is_the_input_table(spark, gte_bundle, docs_table, tmp_path, capsys):
    out = tmp_path / "out"

    def run(**tables: str) -> str:
        sets = {"io.input_table": docs_table, **{f"io.output_tables.{k}": v for k, v in tables.items()}}
        err = _one_line(capsys, main([*as_cli_args(job_overrides(gte_bundle, [], out, **sets)), "run"]))
        assert not (out / "scored").exists()
        return err

    err = run(filtered="spark_catalog.default.CATALOGUE_DOCS")  # found on the driver: default catalog and database
    assert ("io.output_tables.filtered='spark_catalog.default.CATALOGUE_DOCS' is the input table "
            "(io.input_table='catalogue_docs')") in err
    err = run(dropped="'`Catalogue_Docs`'")  # found at config load: case and backticks
    assert err.startswith("spark-jql: error: invalid configuration (--set): io.output_tables.dropped='`Catalogue_Docs`' "
                          "is the input table")
    err = run(filtered="default.KEPT", scored="kept")
    assert "io.output_tables.filtered='default.KEPT' and io.output_tables.scored='kept' are the same table" in err
    assert spark.table(docs_table).count() == 20 and not spark.catalog.tableExists("kept")


@case("`io.output` is a regular file (or lies inside one)",
      "exit 2 before any work: `io.output <f> is a regular file, not a folder; give a folder for the outputs ...`; "
      "before, a raw NotADirectoryError traceback")
def test_output_is_a_regular_file(spark, gte_bundle, tmp_path, capsys):
    docs = write_jsonl(generate_documents(20, seed=5), tmp_path / "in" / "docs.jsonl")[0]
    taken = tmp_path / "results.txt"
    taken.write_text("keep me\n")
    for output, expected in [(taken, f"io.output {taken} is a regular file"),
                             (taken / "jql", f"io.output {taken / 'jql'} lies inside {taken}, which is a regular file")]:
        err = _one_line(capsys, main([*as_cli_args(job_overrides(gte_bundle, [str(docs)], output)), "run"]))
        assert expected in err
    args = as_cli_args(job_overrides(gte_bundle, [str(docs)], tmp_path / "out"))
    err = _one_line(capsys, main([*args, "langid", "--output", str(taken)]))
    assert f"output {taken} is a regular file" in err
    assert taken.read_text() == "keep me\n"


@case("`${VAR}` in a config file with VAR unset (no `${VAR:-default}`), or a misspelt key (`filter.quantle`)",
      "exit 2 before Spark starts: `config file <f>: io.output: environment variable OUT is not set (${OUT}); export it "
      "or give a default, ${OUT:-value}` / `invalid configuration (--set): filter.quantle: unknown key (did you mean "
      "'quantile'?)`; before, `${OUT}` was kept as a literal folder name")
def test_unset_variable_and_misspelt_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    cfg = tmp_path / "job.yaml"
    cfg.write_text("io:\n  output: ${OUT}/jql\n")
    err = _one_line(capsys, main(["-c", str(cfg), "validate"]))
    assert f"config file {cfg}: io.output: environment variable OUT is not set" in err
    err = _one_line(capsys, main(["--set", "filter.quantle=0.7", "validate"]))
    assert "filter.quantle: unknown key (did you mean 'quantile'?)" in err


@case("`thresholds` or `filter` on an `io.output` without `scored/` (or `filter` without `thresholds.json`), or a "
      "local `io.input` that matches nothing, with a local Spark master",
      "exit 2 in well under a second, before the JVM starts: `no scored output at <out>/scored: thresholds reads "
      "<io.output>/scored/ (not io.input); run annotate (or run) first ...` / `input '<glob>' matches no file`; "
      "on a cluster (spark-submit, Databricks, Connect, a Hadoop client) Spark's own check says it")
def test_missing_earlier_output_before_spark(tmp_path, capsys, monkeypatch):
    import time

    from spark_jql.cli.early import CLUSTER_ENV

    for var in CLUSTER_ENV:
        monkeypatch.delenv(var, raising=False)
    base = ["--set", f"io.output={tmp_path / 'out'}", "--set", "spark.master=local[1]"]
    start = time.perf_counter()
    err = _one_line(capsys, main([*base, "thresholds"]))
    assert f"no scored output at {tmp_path / 'out' / 'scored'}: thresholds reads" in err
    err = _one_line(capsys, main([*base, "--set", f"io.input=[{tmp_path}/*.parquet]", "annotate"]))
    assert f"input '{tmp_path}/*.parquet' matches no file" in err
    assert time.perf_counter() - start < 5  # no JVM
