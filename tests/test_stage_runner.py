"""The stage skeleton and its runner: fingerprints refuse mixed output, one read per unit, units overlap,
partitions are planned by bytes, the caller's session is left as it was, every stage reads the same way."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from spark_jql import schema
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.errors import InputError
from spark_jql.spark.job import Job

from .conftest import job_overrides

pytestmark = pytest.mark.spark


def _scores(spark, out: Path) -> dict:
    rows = spark.read.parquet(str(out / "scored")).select("id", schema.AGGREGATE).collect()
    assert len(rows) == len({r["id"] for r in rows}), "duplicate rows"
    return {r["id"]: r[schema.AGGREGATE] for r in rows}


def _job(spark, bundle, inputs, out, **extra) -> Job:
    return Job(spark, load_config(None, job_overrides(bundle, [str(i) for i in inputs], out, **extra)))


def test_replaced_encoder_weights_start_over_or_are_refused(spark, gte_bundle, tmp_path):
    """Issue (a): new weights in the same folder between a kill and the rerun never mix with the old scores."""
    from spark_jql.devtools.tiny_models import build_encoder

    encoder = tmp_path / "encoder"
    shutil.copytree(gte_bundle["embedder"]["model"], encoder)
    bundle = {**gte_bundle, "embedder": {"model": str(encoder)}}
    write_jsonl(generate_documents(60, seed=4), tmp_path / "in", files=3)
    inputs = [tmp_path / "in" / "*.jsonl"]
    _job(spark, bundle, inputs, tmp_path / "out", **{"io.files_per_unit": "1"}).annotate()
    (tmp_path / "out" / "scored" / "_jql_units" / "unit-00002.json").unlink()  # as if killed before the last commit
    build_encoder(tmp_path / "other", "gte-tiny", seed=99)
    shutil.copy(tmp_path / "other" / "model.safetensors", encoder / "model.safetensors")

    with pytest.raises(InputError, match=r"cannot be resumed: .*file encoder/model.safetensors has other contents"):
        _job(spark, bundle, inputs, tmp_path / "out", **{"io.files_per_unit": "1", "io.mode": "error"}).annotate()
    rerun = _job(spark, bundle, inputs, tmp_path / "out", **{"io.files_per_unit": "1"}).annotate()
    assert rerun["units_resumed"] == 0 and rerun["scored_rows"] == 60
    _job(spark, bundle, inputs, tmp_path / "clean", **{"io.files_per_unit": "1"}).annotate()
    assert _scores(spark, tmp_path / "out") == _scores(spark, tmp_path / "clean")  # every score from the new encoder


def test_each_unit_reads_its_input_once_and_units_overlap(spark, gte_bundle, tmp_path, monkeypatch):
    from spark_jql.spark import runner
    from spark_jql.spark.inputs import Source

    write_jsonl(generate_documents(120, seed=5), tmp_path / "in", files=4)
    reads, spans, lock = [], [], threading.Lock()
    real_read, real_unit = Source.read, runner.UnitRunner._unit

    def counting_read(self, paths, data_schema):
        reads.append(tuple(paths))
        return real_read(self, paths, data_schema)

    def timed_unit(self, unit):
        start = time.perf_counter()
        real_unit(self, unit)
        with lock:
            spans.append((start, time.perf_counter()))

    monkeypatch.setattr(Source, "read", counting_read)
    monkeypatch.setattr(runner.UnitRunner, "_unit", timed_unit)
    summary = _job(spark, gte_bundle, [tmp_path / "in" / "*.jsonl"], tmp_path / "out",
                   **{"io.files_per_unit": "1", "io.units_in_flight": "2"}).annotate()
    assert summary["scored_rows"] == 120 and summary["units"] == 4
    assert len(reads) == 4 and len(set(reads)) == 4  # one read of each unit's files, no counting pass
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2  # two units in flight at once


def test_small_files_are_packed_by_bytes_into_planned_partitions_the_last_wave_smaller(spark, gte_bundle, tmp_path):
    import pyarrow.parquet as pq

    files = write_jsonl(generate_documents(80, seed=6), tmp_path / "in", files=40)
    assert max(f.stat().st_size for f in files) < 8000  # tiny files: Spark alone packs them into 1-2 partitions
    _job(spark, gte_bundle, [tmp_path / "in" / "*.jsonl"], tmp_path / "out",
         **{"spark.slots": "2", "spark.partitions_per_slot": "4"}).annotate()
    parts = sorted((tmp_path / "out" / "scored" / "jql_unit=00000").glob("part-*.parquet"))
    tables = [pq.read_table(p, columns=[schema.TOKENS]) for p in parts]  # partition order: the body's scan, then the tail's
    assert sum(t.num_rows for t in tables) == 80
    tokens = [sum(t.column(0).to_pylist()) for t in tables]
    assert 10 <= len(parts) <= 20, tokens  # about slots x partitions_per_slot = 8 per scan, two scans
    third = len(tokens) // 3
    assert sum(tokens[-third:]) < 0.6 * sum(tokens[:third]), tokens  # the last wave: smaller partitions of work


def test_last_wave_holds_the_smallest_files_up_to_a_quarter_of_the_bytes():
    from spark_jql.spark.runner import last_wave

    sizes = {f"f{i}": s for i, s in enumerate([50, 10, 400, 30, 20, 300, 90, 100])}  # 1,000 bytes
    paths = list(sizes)
    body, tail = last_wave(paths, sizes)
    assert sorted(body + tail) == sorted(paths) and not set(body) & set(tail)  # each file once
    assert tail == ["f0", "f1", "f3", "f4", "f6"]  # 10 + 20 + 30 + 50 + 90 = 200 <= 250; +100 would pass it
    assert body == ["f2", "f5", "f7"]  # input order kept
    assert last_wave(["a"], {"a": 10}) == [["a"]]  # one file: one scan
    assert last_wave(["a", "b"], {"a": 10, "b": 10}) == [["a", "b"]]  # no file fits in a quarter
    assert last_wave(["a", "b"], {}) == [["a", "b"]]  # sizes unknown


def test_the_callers_session_settings_are_unchanged(spark, gte_bundle, tmp_path):
    keys = ["spark.sql.execution.arrow.maxRecordsPerBatch", "spark.sql.files.openCostInBytes",
            "spark.sql.files.maxPartitionBytes", "spark.sql.files.minPartitionNum"]
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "777")
    try:
        before = {k: spark.conf.get(k, None) for k in keys}
        write_jsonl(generate_documents(20, seed=7), tmp_path / "in.jsonl")
        _job(spark, gte_bundle, [tmp_path / "in.jsonl"], tmp_path / "out").annotate()
        assert {k: spark.conf.get(k, None) for k in keys} == before
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")


def _with_bad_line(path: Path) -> Path:
    lines = [json.dumps({"id": d["id"], "text": d["text"]}) for d in generate_documents(6, seed=8)]
    lines.insert(2, '{"text": "unterminated')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_malformed_line_in_embed_names_file_and_line_or_is_skipped_and_counted(spark, gte_bundle, tmp_path):
    from spark_jql.spark.embed import write_embeddings

    data = _with_bad_line(tmp_path / "in" / "a.jsonl")
    lang = {"columns.constant_language": "es"}
    cfg = load_config(None, job_overrides(gte_bundle, [str(data)], tmp_path / "out", **lang))
    with pytest.raises(InputError, match=r"a\.jsonl: line 3: not a JSON object"):
        write_embeddings(cfg, str(tmp_path / "emb"))
    skip = load_config(None, job_overrides(gte_bundle, [str(data)], tmp_path / "out", **lang, **{"io.on_bad_file": "skip"}))
    done = write_embeddings(skip, str(tmp_path / "emb_skip"))
    assert done["rows"] == 6 and done["skipped_records"] == 1 and done["rows_with_embedding"] == 6


def test_a_malformed_line_in_langid_names_file_and_line_or_is_skipped_and_counted(spark, tmp_path):
    pytest.importorskip("lingua")
    from spark_jql.config import LangIdConfig
    from spark_jql.spark.langid import cli_langid

    data = _with_bad_line(tmp_path / "in" / "b.jsonl")
    cfg = load_config(None, [f"io.input={json.dumps([str(data)])}", f"io.output={tmp_path / 'out'}"])
    with pytest.raises(InputError, match=r"b\.jsonl: line 3: not a JSON object"):
        cli_langid(cfg, str(tmp_path / "lang"), LangIdConfig())
    skip = load_config(None, [f"io.input={json.dumps([str(data)])}", f"io.output={tmp_path / 'out'}", "io.on_bad_file=skip"])
    done = cli_langid(skip, str(tmp_path / "lang_skip"), LangIdConfig())["langid"]
    assert done["rows"] == 6 and done["skipped_records"] == 1 and sum(done["languages"].values()) == 6


def test_a_malformed_line_in_judge_names_file_and_line_or_is_skipped_and_counted(spark, tmp_path):
    from spark_jql.config import JudgeConfig
    from spark_jql.devtools.fake_judge import FakeJudgeServer
    from spark_jql.spark.judge import write_judgements

    data = _with_bad_line(tmp_path / "in" / "c.jsonl")
    with FakeJudgeServer(latency=0.0) as server:
        judges = JudgeConfig.model_validate({"judges": [{"name": "fake", "base_url": server.url, "model": "m"}],
                                             "max_retries": 0, "timeout_seconds": 5})
        base = [f"io.input={json.dumps([str(data)])}", f"io.output={tmp_path / 'out'}"]
        with pytest.raises(InputError, match=r"c\.jsonl: line 3: not a JSON object"):
            write_judgements(load_config(None, base), judges, str(tmp_path / "judged"))
        done = write_judgements(load_config(None, base + ["io.on_bad_file=skip"]), judges, str(tmp_path / "judged_skip"))
    assert done["rows"] == 6 and done["skipped_records"] == 1
