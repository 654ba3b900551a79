"""Catalogue: reading input, resuming and tables in/out. One test per situation; each asserts the
message and that no document is lost, duplicated or mixed (see tests/catalogue.py)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import pytest

from spark_jql import schema
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.errors import InputError
from spark_jql.spark.job import Job
from tests import test_lease as lease
from tests import test_reliability as reliability

from .catalogue import case
from .conftest import as_cli_args, job_overrides


def _docs(n: int, seed: int, prefix: str) -> list[dict]:
    return [{**d, "id": f"{prefix}{i}"} for i, d in enumerate(generate_documents(n, seed=seed))]


def _jsonl(path: Path, docs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _job(spark, bundle, inputs, out: Path, **extra) -> Job:
    return Job(spark, load_config(None, job_overrides(bundle, [str(i) for i in inputs], out, **extra)))


def _scored(spark, out: Path) -> dict:
    """id -> score of every scored row; fails on a duplicated id or an all-null row."""
    rows = spark.read.option("mergeSchema", "true").parquet(str(out / "scored")).select("id", "text", schema.AGGREGATE).collect()
    ids = [r["id"] for r in rows]
    assert None not in ids, "a row without an id (an all-null row?)"
    assert len(ids) == len(set(ids)), "duplicated rows"
    return {r["id"]: r[schema.AGGREGATE] for r in rows}


# -- reading ---------------------------------------------------------------------------------------


@case("a JSON-lines file holds malformed lines (`{\"text\": \"unterminated`, `42`, `not json`)",
      "error `a.jsonl: line 2: not a JSON object: ...` (exit 2); `io.on_bad_file=skip`: the lines are skipped and "
      "counted in `summary.json` (`skipped_records`); never an all-null row")
def test_malformed_json_lines(spark, gte_bundle, tmp_path):
    good = _docs(6, 1, "a")
    lines = [json.dumps(good[0]), '{"id": "broken", "text": "unterminated', "42", *map(json.dumps, good[1:]), "not json"]
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"a\.jsonl: line 2: not a JSON object: '\{\"id\": \"broken\"") as err:
        _job(spark, gte_bundle, [src], tmp_path / "fail").annotate()
    assert "3 bad record(s)" in str(err.value) and "io.on_bad_file=skip" in str(err.value)
    summary = _job(spark, gte_bundle, [src], tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert summary["skipped_records"] == 3 and summary["skipped_records_by_file"] == {str(src): 3}
    assert set(_scored(spark, tmp_path / "skip")) == {d["id"] for d in good}
    assert json.loads((tmp_path / "skip" / "summary.json").read_text())["annotate"]["skipped_records"] == 3


@case("a gzip-compressed file is named `a.jsonl` (no `.gz`)",
      "found by its magic bytes: error `a.jsonl: line 1: the file is gzip-compressed ... name it with its compression "
      "suffix`; `skip`: its records are counted as skipped, the other files are scored")
def test_compressed_file_under_a_plain_name(spark, gte_bundle, tmp_path):
    hidden = _docs(20, 2, "gz")
    (tmp_path / "a.jsonl").write_bytes(gzip.compress("".join(json.dumps(d) + "\n" for d in hidden).encode()))
    plain = _jsonl(tmp_path / "b.jsonl", _docs(5, 3, "b"))
    inputs = [tmp_path / "*.jsonl"]
    with pytest.raises(InputError, match=r"a\.jsonl: line 1: the file is gzip-compressed .*\.jsonl\.gz"):
        _job(spark, gte_bundle, inputs, tmp_path / "fail").annotate()
    summary = _job(spark, gte_bundle, inputs, tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert list(summary["skipped_records_by_file"]) == [str(tmp_path / "a.jsonl")]
    assert set(_scored(spark, tmp_path / "skip")) == {f"b{i}" for i in range(5)}
    assert plain.exists()


@case("two JSON documents on one line (`{...}{...}`, `{...} {...}`: `cat` after a file without a final newline)",
      "never silently lost: error `a.jsonl: line 3: more than one JSON value on one line (a missing line break between two "
      "documents?)` (exit 2); `io.on_bad_file=skip`: the line is skipped and counted (`skipped_records`)")
def test_two_json_documents_on_one_line(spark, gte_bundle, tmp_path):
    docs = _docs(10, 21, "a")
    lines = [json.dumps(d) for d in docs]
    lines[2:4] = [lines[2] + lines[3]]  # {...}{...}
    lines[4:6] = [lines[4] + " " + lines[5]]  # {...} {...}
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"a\.jsonl: line 3: more than one JSON value on one line") as err:
        _job(spark, gte_bundle, [src], tmp_path / "fail").annotate()
    assert "2 bad record(s)" in str(err.value)
    summary = _job(spark, gte_bundle, [src], tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert summary["skipped_records"] == 2 and summary["input_rows"] + summary["skipped_records"] == len(lines)
    assert set(_scored(spark, tmp_path / "skip")) == {d["id"] for d in docs} - {"a2", "a3", "a5", "a6"}


@case("whitespace-only lines (spaces, a tab, `\\r`) between the documents",
      "ignored like empty lines, never a bad record; an error further down names its own line number")
def test_whitespace_only_lines(spark, gte_bundle, tmp_path):
    docs = _docs(5, 22, "w")
    lines = [json.dumps(docs[0]), "\t", json.dumps(docs[1]), "   ", " \t \r", json.dumps(docs[2]), "",
             json.dumps(docs[3]), json.dumps(docs[4])]
    src = tmp_path / "w.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary = _job(spark, gte_bundle, [src], tmp_path / "ok").annotate()
    assert summary["skipped_records"] == 0 and set(_scored(spark, tmp_path / "ok")) == {d["id"] for d in docs}
    src.write_text("\n".join([*lines[:7], "not json", *lines[7:]]) + "\n")
    with pytest.raises(InputError, match=r"w\.jsonl: line 8: not a JSON object: 'not json' \(1 bad record"):
        _job(spark, gte_bundle, [src], tmp_path / "fail").annotate()


@case("a JSON-lines file in which no record has the text key (e.g. `content` instead of `text`), beside good files",
      "a bad file: error `cannot read input file b.jsonl: has no key in any record 'text' (columns.text; its columns are "
      "['content', 'id']) ...`; `skip`: the file is skipped and listed in `skipped_files`; never `no_score` rows")
def test_jsonl_file_without_the_text_key(spark, gte_bundle, tmp_path):
    _jsonl(tmp_path / "in" / "a.jsonl", _docs(4, 23, "a"))
    _jsonl(tmp_path / "in" / "b.jsonl", [{"id": f"b{i}", "content": d["text"]} for i, d in enumerate(_docs(3, 24, "b"))])
    inputs = [tmp_path / "in" / "*.jsonl"]
    with pytest.raises(InputError, match=r"b\.jsonl: has no key in any record 'text' \(columns\.text; its columns are "
                                         r"\['content', 'id'\]\).*io\.on_bad_file=skip"):
        _job(spark, gte_bundle, inputs, tmp_path / "fail").annotate()
    summary = _job(spark, gte_bundle, inputs, tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert [s["file"] for s in summary["skipped_files"]] == [str(tmp_path / "in" / "b.jsonl")]
    assert summary["rows_without_text"] == 0 and set(_scored(spark, tmp_path / "skip")) == {f"a{i}" for i in range(4)}


@case("the same file is given twice under two spellings (`dir/a.jsonl`, `dir/../dir/a.jsonl`, a glob)",
      "paths are normalised and de-duplicated: the file is read once")
def test_same_file_two_spellings(spark, gte_bundle, tmp_path):
    src = _jsonl(tmp_path / "dir" / "a.jsonl", _docs(8, 4, "a"))
    twice = [src, tmp_path / "dir" / ".." / "dir" / "a.jsonl", tmp_path / "dir" / "*.jsonl"]
    summary = _job(spark, gte_bundle, twice, tmp_path / "out").annotate()
    assert summary["input_files"] == 1 and summary["scored_rows"] == 8
    assert len(_scored(spark, tmp_path / "out")) == 8


@case("JSON text values that are not strings (`12345`, `[\"a\",\"b\"]`, `{\"a\": 1}`)",
      "error naming the file, line and column (`text column 'text' holds a JSON value that is not a string`); "
      "`skip`: those records are skipped and counted; the string `\"12345\"` is scored")
def test_nonstring_json_text(spark, gte_bundle, tmp_path):
    docs = [{"id": "s", "text": "12345"}, {"id": "ok", "text": "Ein ganz normaler Satz."},
            {"id": "n", "text": 12345}, {"id": "l", "text": ["a", "b"]}, {"id": "o", "text": {"a": 1}},
            {"id": "t", "text": True}, {"id": "brackets", "text": "[citation needed] and {braces}"}]
    src = _jsonl(tmp_path / "t.jsonl", docs)
    with pytest.raises(InputError, match=r"t\.jsonl: line 3: text column 'text' holds a JSON value that is not a string"):
        _job(spark, gte_bundle, [src], tmp_path / "fail").annotate()
    summary = _job(spark, gte_bundle, [src], tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert summary["skipped_records"] == 4
    assert set(_scored(spark, tmp_path / "skip")) == {"s", "ok", "brackets"}


@pytest.fixture()
def parquet_dir(spark, tmp_path):
    def write(name: str, rows: list[dict]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = tmp_path / "pq" / name
        target.parent.mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), target)
        return target

    return write


@case("parquet files with different columns (one has an extra column; a later one lacks the text column)",
      "schemas are merged: the extra column is kept (null for the other files); a file without the text column is "
      "an error naming it (`input file ... has no column 'text'`)")
def test_parquet_schemas_merged(spark, gte_bundle, parquet_dir, tmp_path):
    parquet_dir("a.parquet", [{"id": f"a{i}", "text": f"Satz {i}."} for i in range(4)])
    parquet_dir("b.parquet", [{"id": f"b{i}", "text": f"Frase {i}.", "url": f"u{i}"} for i in range(3)])
    inputs = [tmp_path / "pq" / "*.parquet"]
    _job(spark, gte_bundle, inputs, tmp_path / "out").annotate()
    rows = spark.read.parquet(str(tmp_path / "out" / "scored")).select("id", "url").collect()
    assert {r["id"]: r["url"] for r in rows} == {**{f"a{i}": None for i in range(4)}, **{f"b{i}": f"u{i}" for i in range(3)}}
    parquet_dir("c.parquet", [{"id": f"c{i}", "body": "kein text"} for i in range(2)])
    with pytest.raises(InputError, match=r"c\.parquet: has no column 'text'"):
        _job(spark, gte_bundle, inputs, tmp_path / "out2").annotate()


@case("parquet files whose column types clash (`id` is bigint in one file, string in another)",
      "error naming the files, the column and both types: `cannot read input file b.parquet: column 'id' is string in this "
      "file but bigint in a.parquet ...`; `skip`: the odd file is skipped and listed in `skipped_files`")
def test_parquet_column_types_clash(spark, gte_bundle, parquet_dir, tmp_path):
    parquet_dir("a.parquet", [{"id": i, "text": f"Satz {i}."} for i in range(4)])
    parquet_dir("b.parquet", [{"id": f"b{i}", "text": f"Frase {i}."} for i in range(3)])
    parquet_dir("c.parquet", [{"id": 10 + i, "text": f"Phrase {i}."} for i in range(2)])
    inputs = [tmp_path / "pq" / "*.parquet"]
    with pytest.raises(InputError, match=r"cannot read input file .*b\.parquet: column 'id' is string in this file but "
                                         r"bigint in .*a\.parquet and 1 other file\(s\)"):
        _job(spark, gte_bundle, inputs, tmp_path / "fail").annotate()
    summary = _job(spark, gte_bundle, inputs, tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert [s["file"] for s in summary["skipped_files"]] == [str(tmp_path / "pq" / "b.parquet")]
    assert sorted(_scored(spark, tmp_path / "skip")) == [0, 1, 2, 3, 10, 11]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@case("hive-style partition directories (`in/lang=srp/part-0.jsonl`, parquet alike) named by their folder or a glob",
      "read as Spark reads them: the partition column (`lang`) is in scored/ and filtered/ and may be the language "
      "column; several folders with partition directories below them are refused naming them (one `basePath`)")
def test_hive_partition_directories(spark, gte_bundle, tmp_path, fmt):
    import pyarrow as pa
    import pyarrow.parquet as pq

    langs = {"srp": _docs(6, 25, "s"), "hrv": _docs(5, 26, "h")}
    for lang, docs in langs.items():
        target = tmp_path / "in" / f"lang={lang}" / f"part-0.{fmt}"
        if fmt == "jsonl":
            _jsonl(target, docs)
        else:
            target.parent.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist([{"id": d["id"], "text": d["text"]} for d in docs]), target)
    expected = {d["id"]: lang for lang, docs in langs.items() for d in docs}
    for inputs, out in (([tmp_path / "in"], "folder"), ([tmp_path / "in" / "*" / f"*.{fmt}"], "glob")):
        summary = _job(spark, gte_bundle, inputs, tmp_path / out, **{"columns.language": '["lang"]',
                                                                   "thresholds.min_docs": "3"}).run()
        rows = spark.read.parquet(str(tmp_path / out / "scored")).select("id", "lang").collect()
        assert {r["id"]: r["lang"] for r in rows} == expected
        assert sorted(e["lang"] for e in summary["filter"]["per_language"]) == ["hrv", "srp"]
    with pytest.raises(InputError, match=r"hive-style partition directories .* several folders"):
        _job(spark, gte_bundle, [tmp_path / "in" / "lang=srp", tmp_path / "in"], tmp_path / "two").annotate()


@case("a parquet file whose non-text column is corrupt (readable footer, broken `id` pages)",
      "the bad-file probe reads every column: error naming the file; `skip`: the file is skipped and listed")
def test_corrupt_non_text_parquet_column(spark, gte_bundle, parquet_dir, tmp_path):
    import pyarrow.parquet as pq

    parquet_dir("a.parquet", [{"id": f"a{i}", "text": f"Satz {i}."} for i in range(5)])
    bad = parquet_dir("b.parquet", [{"id": f"b{i}" * 50, "text": f"Frase {i}."} for i in range(5)])
    chunk = pq.ParquetFile(bad).metadata.row_group(0).column(0)  # the id column
    data = bytearray(bad.read_bytes())
    start = chunk.data_page_offset + 8
    data[start : start + 64] = b"\xff" * 64
    bad.write_bytes(bytes(data))
    inputs = [tmp_path / "pq" / "*.parquet"]
    with pytest.raises(InputError, match=r"b\.parquet"):
        _job(spark, gte_bundle, inputs, tmp_path / "fail").annotate()
    summary = _job(spark, gte_bundle, inputs, tmp_path / "skip", **{"io.on_bad_file": "skip"}).annotate()
    assert [s["file"] for s in summary["skipped_files"]] == [str(bad)]
    assert set(_scored(spark, tmp_path / "skip")) == {f"a{i}" for i in range(5)}


@case("input columns named like spark_jql's own (`jql_unit`, `_jql_corrupt_record`, `jql_score`)",
      "error `the input ... has column(s) ['jql_unit'] named like spark_jql's own ...: rename or drop them` before "
      "anything is scored; never overwritten or dropped")
def test_reserved_column_names(spark, gte_bundle, tmp_path):
    for column in ("jql_unit", "_jql_corrupt_record", "JQL_SCORE"):
        src = _jsonl(tmp_path / column / "a.jsonl", [{"id": "1", "text": "Hallo Welt.", column: "mine"}])
        with pytest.raises(InputError, match=rf"has column\(s\) \['{column}'\] named like spark_jql's own"):
            _job(spark, gte_bundle, [src], tmp_path / column / "out").annotate()
        assert not list((tmp_path / column / "out" / "scored").glob("jql_unit=*"))


CONNECT_CLIENT = """
import json, sys
from spark_jql.cli import run_job
from spark_jql.errors import SparkJQLError

found = {}
for name, args in json.loads(sys.argv[1]).items():
    try:
        run_job(args)
        found[name] = None
    except SparkJQLError as err:
        found[name] = str(err)
print("RESULTS " + json.dumps(found))
"""


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="pyspark[connect] extras not installed")
@case("on Spark Connect: two JSON documents on one line, parquet column types that clash, a bad stored embedding",
      "the same one line as on a classic session (the query's error crosses Connect and is named by file and line, "
      "column or document); exit 2")
def test_reading_errors_over_spark_connect(spark, connect_url, gte_bundle, parquet_dir, embeddings_dir, tmp_path):
    import subprocess
    import sys

    lines = [json.dumps(d) for d in _docs(4, 28, "c")]
    src = tmp_path / "two.jsonl"
    src.write_text("\n".join([lines[0], lines[1] + lines[2], lines[3]]) + "\n")
    parquet_dir("a.parquet", [{"id": 1, "text": "Satz."}])
    parquet_dir("b.parquet", [{"id": "x", "text": "Frase."}])
    embeddings_dir("a.parquet", [("a0", [0.1] * 32), ("a1", [0.1] * 32)])
    embeddings_dir("b.parquet", [("b0", [0.1] * 32), ("b1", [0.1] * 8)])
    jobs = {
        "two": ([src], {}),
        "clash": ([tmp_path / "pq" / "*.parquet"], {}),
        "embedding": ([tmp_path / "emb" / "*.parquet"], {"columns.embedding": "emb", "io.files_per_unit": "1"}),
    }
    args = {name: [*as_cli_args(job_overrides(gte_bundle, [str(i) for i in inputs], tmp_path / f"out-{name}", **sets)),
                   "annotate"] for name, (inputs, sets) in jobs.items()}
    env = {**os.environ, "SPARK_REMOTE": connect_url, "SPARK_JQL_ARTIFACT_IO": "spark",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", CONNECT_CLIENT, json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert all(message is not None and len(message.splitlines()) == 1 for message in found.values()), found
    assert f"{src}: line 2: more than one JSON value on one line" in found["two"]
    assert "b.parquet: column 'id' is string in this file but bigint in " in found["clash"]
    assert (f"bad stored embedding in {tmp_path / 'emb' / 'b.parquet'}: embedding column 'emb' (columns.embedding), "
            "document id=b1: has 8 dimensions, the heads take 32") in found["embedding"]


# -- resume ----------------------------------------------------------------------------------------


@case("a rerun after a kill (or over finished output) with another scorer configuration (`scorer.aggregate=max`, fewer heads)",
      "never mixed: `io.mode=overwrite` starts over (every score from the new configuration); `io.mode=error` refuses: "
      "`... cannot be resumed: what decides the output differs from the previous run's: setting aggregate (\"mean\" -> \"max\") changed`")
def test_rerun_with_another_scorer(spark, gte_bundle, tmp_path):
    write_jsonl(_docs(12, 5, "a"), tmp_path / "in", files=3)
    inputs = [tmp_path / "in" / "*.jsonl"]
    out = tmp_path / "out"
    _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1"}).annotate()
    (out / "scored" / "_jql_units" / "unit-00002.json").unlink()  # as if killed before the last unit
    with pytest.raises(InputError, match=r"cannot be resumed: what decides the output differs .*setting aggregate \(\"mean\" -> \"max\"\) changed"):
        _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1", "scorer.aggregate": "max",
                                                "io.mode": "error"}).annotate()
    summary = _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1", "scorer.aggregate": "max"}).annotate()
    assert summary["units_resumed"] == 0 and summary["scored_rows"] == 12
    rows = spark.read.parquet(str(out / "scored")).collect()
    heads = [schema.head_column(h["name"]) for h in gte_bundle["heads"]]
    assert all(r[schema.AGGREGATE] == pytest.approx(max(r[h] for h in heads)) for r in rows)


@case("an input file is replaced under the same name between runs",
      "its size or modification time differs from the manifest: the run starts over (`io.mode=error`: refused, "
      "naming the file); the new documents are scored, the old ones are gone")
def test_file_replaced_under_same_name(spark, gte_bundle, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", _docs(5, 6, "old"))
    _job(spark, gte_bundle, [src], tmp_path / "out").annotate()
    _jsonl(src, _docs(7, 7, "new"))
    os.utime(src, (1_700_000_000, 1_700_000_000))
    with pytest.raises(InputError, match=r"1 input file\(s\) changed since the previous run, e\.g\. .*a\.jsonl"):
        _job(spark, gte_bundle, [src], tmp_path / "out", **{"io.mode": "error"}).annotate()
    summary = _job(spark, gte_bundle, [src], tmp_path / "out").annotate()
    assert summary["units_resumed"] == 0
    assert set(_scored(spark, tmp_path / "out")) == {f"new{i}" for i in range(7)}


@case("`io.mode=error` on a rerun over the same inputs after a finished run",
      "refused up front (`... already exists (io.mode=error)`), before anything is rewritten")
def test_mode_error_refuses_before_writing(spark, gte_bundle, tmp_path):
    from spark_jql.cli import main

    from .conftest import as_cli_args

    src = _jsonl(tmp_path / "a.jsonl", _docs(6, 8, "a"))
    out = tmp_path / "out"
    _job(spark, gte_bundle, [src], out).run()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    job = _job(spark, gte_bundle, [src], out, **{"io.mode": "error"})
    for stage in (job.run, job.annotate, job.thresholds, job.filter):
        with pytest.raises(InputError, match=r"already exists \(io\.mode=error\)"):
            stage()
    args = as_cli_args(job_overrides(gte_bundle, [str(src)], out, **{"io.mode": "error"}))
    assert main([*args, "run"]) == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


@case("new files arrive in the input folder (data-lake ETL) and the job is rerun",
      "`io.incremental` (default on): finished units are kept, only the new files are scored "
      "(`input_files_added` in `summary.json`); with it off, the run starts over")
def test_incremental_new_files(spark, gte_bundle, tmp_path):
    write_jsonl(_docs(10, 9, "a"), tmp_path / "in" / "day1", files=2)
    inputs = [tmp_path / "in" / "*" / "*.jsonl"]
    out = tmp_path / "out"
    first = _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1"}).annotate()
    before = _scored(spark, out)
    _jsonl(tmp_path / "in" / "day2" / "part-0.jsonl", _docs(4, 10, "b"))
    second = _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1"}).annotate()
    assert (first["units"], second["units"], second["units_resumed"], second["input_files_added"]) == (2, 3, 2, 1)
    after = _scored(spark, out)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {f"b{i}" for i in range(4)}
    _jsonl(tmp_path / "in" / "day3" / "part-0.jsonl", _docs(3, 11, "c"))
    third = _job(spark, gte_bundle, inputs, out, **{"io.files_per_unit": "1", "io.incremental": "false"}).annotate()
    assert third["units_resumed"] == 0 and third["scored_rows"] == 17  # started over: new scores for all
    assert len(_scored(spark, out)) == 17


# Cases that already held before this catalogue, checked where they were first tested:
case("the driver is SIGKILLed mid-run, then the job is rerun",
     "the rerun resumes the committed units and gives exactly the uninterrupted result")(
    reliability.test_killed_run_resumes_to_the_uninterrupted_result)
case("a truncated parquet file (footer gone)", "error naming the file; `skip`: skipped and listed in `summary.json`")(
    reliability.test_corrupt_parquet_fails_naming_the_file_or_is_skipped)
case("a truncated `.jsonl.gz`, an empty `.jsonl.gz`",
     "the truncated one is skipped and listed (`skip`); the empty one contributes no rows")(
    reliability.test_truncated_gzip_and_empty_file)
case("invalid UTF-8, lone surrogates, control characters, a 5 MB document",
     "all scored: invalid bytes become U+FFFD, the long document is truncated at `embedder.max_length`")(
    reliability.test_dirty_text_is_scored_not_dropped)
case("a second run starts on an output another run is still writing",
     "refused before it writes or deletes anything, exit 2: `output <out> is in use by run 3f2a (annotate, host h1 pid 4242, "
     "started 12:01:02, last heartbeat 3 s ago); wait for it to finish, or stop it ...`; a killed holder's lease "
     "(`_jql_lease.json`) is taken over at once on the same host, after 60 s without heartbeat from another")(
    lease.test_live_lease_refuses_a_second_run_then_a_dead_holder_is_taken_over)


# -- tables in and out -----------------------------------------------------------------------------


@case("`io.partition_by_language` while the language column holds both `\"\"` and null",
      "refused before filter writes anything: `io.partition_by_language: language column 'language' holds the empty "
      "string in 2 document(s) ...: map \"\" to a language code (e.g. 'und') ...` (Spark would write both to "
      "`__HIVE_DEFAULT_PARTITION__` and read `\"\"` back as null); without partitioning both round-trip distinct")
def test_empty_string_language_with_partitioning(spark, gte_bundle, tmp_path):
    docs = _docs(12, 27, "p")
    for i, language in ((0, ""), (1, ""), (2, None), (3, None)):
        docs[i]["language"] = language
    src = _jsonl(tmp_path / "a.jsonl", docs)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"io\.partition_by_language: language column 'language' holds the empty string "
                                         r"in 2 document\(s\) of .*scored.*map \"\" to a language code"):
        _job(spark, gte_bundle, [src], out, **{"io.partition_by_language": "true", "thresholds.min_docs": "3"}).run()
    assert not (out / "filtered").exists() and not (out / "dropped").exists()
    summary = _job(spark, gte_bundle, [src], out, **{"thresholds.min_docs": "3"}).filter()
    written = spark.read.parquet(str(out / "filtered")).unionByName(
        spark.read.parquet(str(out / "dropped")).drop(schema.DROP_REASON))
    languages = {r["id"]: r["language"] for r in written.select("id", "language").collect()}
    assert (languages["p0"], languages["p1"], languages["p2"], languages["p3"]) == ("", "", None, None)
    assert summary["kept_rows"] + summary["dropped_rows"] == 12


@pytest.fixture()
def embeddings_dir(tmp_path):
    """Writes parquet files of (id, emb) for heads-only rescoring; ``emb`` as given (array<float> or binary)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(name: str, rows: list[tuple[str, object]], binary: bool = False) -> Path:
        target = tmp_path / "emb" / name
        target.parent.mkdir(exist_ok=True)
        kind = pa.binary() if binary else pa.list_(pa.float32())
        pq.write_table(pa.table({"id": [r[0] for r in rows], "emb": pa.array([r[1] for r in rows], kind)}), target)
        return target

    return write


@case("rescoring stored embeddings (`columns.embedding`) with a bad value: another width, widths mixed across files, "
      "an empty array, a binary value of an odd byte length",
      "one line naming the file, column, document and problem (`bad stored embedding in b.parquet: embedding column 'emb' "
      "(columns.embedding), document id=b2: has 16 dimensions, the heads take 32`), exit 2: the first rows are checked on "
      "the driver before any task, the rest on executors")
def test_bad_stored_embeddings(spark, gte_bundle, embeddings_dir, tmp_path, capsys):
    from spark_jql.cli import main

    good = [(f"a{i}", [0.01 * (i + k) for k in range(32)]) for i in range(6)]
    embeddings_dir("a.parquet", good)
    sets = {"columns.embedding": "emb", "io.files_per_unit": "1"}

    def refused(name: str, rows: list, message: str, binary: bool = False, **more: str) -> None:
        bad = embeddings_dir(name, rows, binary)
        args = as_cli_args(job_overrides(gte_bundle, [str(tmp_path / "emb" / "*.parquet")], tmp_path / name, **sets, **more))
        assert main([*args, "annotate"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err[-3000:]
        assert f"bad stored embedding in {bad}: embedding column 'emb' (columns.embedding), {message}" in err, err
        bad.unlink()

    # b.parquet sorts after a.parquet: the driver's first rows pass, an executor finds it
    refused("b.parquet", [*good[:2], ("b2", [0.1] * 16)], "document id=b2: has 16 dimensions, the heads take 32")
    refused("b.parquet", [*good[:3], ("b3", [])], "document id=b3: has 0 dimensions, the heads take 32")
    refused("0.parquet", [("z0", [0.1] * 48)], "document id=z0: has 48 dimensions, the heads take 32")  # the driver's rows
    half = bytes(64)  # 32 float16 values
    embeddings_dir("a.parquet", [(f"a{i}", half) for i in range(6)], binary=True)
    refused("b.parquet", [("b0", half), ("b1", half[:-1])],
            "document id=b1: has 63 bytes, not a whole number of 2-byte float16 values", binary=True,
            **{"columns.embedding_dtype": "float16"})
    summary = _job(spark, gte_bundle, [tmp_path / "emb" / "*.parquet"], tmp_path / "ok",
                   **sets, **{"columns.embedding_dtype": "float16"}).annotate()
    assert summary["scored_rows"] == summary["rows_with_score"] == 6


@case("the input is a catalog table (`io.input_table`; Delta/Iceberg by `io.input_format`), outputs go to tables "
      "(`io.output_tables`), partitioned by language, with chosen columns (`io.output_columns`)",
      "units are the table's files (`_metadata.file_path`, with size and modification time): rows appended as new files "
      "are scored incrementally, a rewritten table starts over; kept + dropped = scored is checked on the written tables")
def test_table_in_tables_out(spark, gte_bundle, tmp_path):
    spark.createDataFrame(_docs(12, 12, "t")).repartition(2).write.mode("overwrite").saveAsTable("jql_in")
    out = tmp_path / "out"
    settings = {"io.input_table": "jql_in", "io.files_per_unit": "1", "io.output_tables.filtered": "jql_kept",
                "io.output_tables.dropped": "jql_dropped", "io.partition_by_language": "true",
                "io.output_columns": '["id", "language", "jql_score"]', "thresholds.min_docs": "5"}
    summary = _job(spark, gte_bundle, [], out, **settings).run()
    kept, dropped = spark.table("jql_kept"), spark.table("jql_dropped")
    assert sorted(kept.columns) == ["id", "jql_score", "language"]
    assert sorted(dropped.columns) == ["id", "jql_drop_reason", "jql_score", "language"]
    ids = [r["id"] for r in kept.union(dropped.drop("jql_drop_reason").select(*kept.columns)).collect()]
    assert sorted(ids) == sorted(f"t{i}" for i in range(12))
    assert summary["filter"]["kept_rows"] == kept.count()
    assert all("/language=" in f for f in kept.inputFiles())
    units = summary["annotate"]["units"]

    spark.createDataFrame(_docs(3, 13, "u")).coalesce(1).write.mode("append").saveAsTable("jql_in")
    added = _job(spark, gte_bundle, [], out, **settings).annotate()
    assert (added["units_resumed"], added["input_files_added"], added["scored_rows"]) == (units, 1, 15)
    assert set(_scored(spark, out)) == {f"t{i}" for i in range(12)} | {f"u{i}" for i in range(3)}

    spark.createDataFrame(_docs(4, 14, "v")).coalesce(1).write.mode("overwrite").saveAsTable("jql_in")
    with pytest.raises(InputError, match="input file\\(s\\) of the previous run are gone"):
        _job(spark, gte_bundle, [], out, **{**settings, "io.mode": "error"}).annotate()
    rewritten = _job(spark, gte_bundle, [], out, **settings).annotate()
    assert rewritten["units_resumed"] == 0 and set(_scored(spark, out)) == {f"v{i}" for i in range(4)}
