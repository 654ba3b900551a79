"""The stream command: frozen thresholds, every document in exactly one output exactly once, across restarts and
a replayed micro-batch (a run killed after writing a batch but before the checkpoint committed it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_jql import schema
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents
from spark_jql.errors import InputError
from spark_jql.spark.job import Job
from spark_jql.spark.stream import start_stream, stream_summary

from .conftest import _lake_conf, as_cli_args, job_overrides, require_connector


def _write(path: Path, prefix: str, n: int, seed: int) -> list[str]:
    rows = [{"id": f"{prefix}{i}", "text": d["text"], "language": d["language"]}
            for i, d in enumerate(generate_documents(n, seed=seed))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["id"] for r in rows]


def _config(bundle, inputs, out, **sets):
    return load_config(None, job_overrides(bundle, inputs, out, **{"thresholds.min_docs": "5", **sets}))


def _stream(spark, config, checkpoint: Path, thresholds: Path) -> dict:
    query = start_stream(spark, config, str(checkpoint), max_files_per_trigger=1, thresholds=str(thresholds))
    query.awaitTermination()
    assert query.exception() is None
    return {**stream_summary(spark, str(checkpoint)), "read_now": sum(p["numInputRows"] for p in query.recentProgress)}


def _replay_last_batch(checkpoint: Path) -> None:
    """As if killed after the last batch's writes, before its commit: Spark runs that batch again on restart."""
    commits = sorted((checkpoint / "commits").glob("[0-9]*"), key=lambda p: int(p.name))
    commits[-1].unlink()
    (commits[-1].parent / f".{commits[-1].name}.crc").unlink(missing_ok=True)  # Hadoop's checksum beside it


def _decisions(rows, score_column: str) -> dict[str, bool]:
    return {r["id"]: r[schema.THRESHOLD] is not None and r[score_column] is not None and r[score_column] >= r[schema.THRESHOLD]
            for r in rows}


def test_stream_of_files_scores_each_document_once_across_restart_and_replay(spark, gte_bundle, tmp_path):
    (tmp_path / "in").mkdir()
    ids = _write(tmp_path / "in" / "a.jsonl", "a", 20, 61) + _write(tmp_path / "in" / "b.jsonl", "b", 20, 62)
    batch = tmp_path / "batch"
    Job(spark, _config(gte_bundle, [str(tmp_path / "in")], batch)).run()  # the thresholds to freeze
    thresholds = batch / "thresholds.json"
    out, checkpoint = tmp_path / "stream", tmp_path / "checkpoint"
    config = _config(gte_bundle, [str(tmp_path / "in")], out)

    first = _stream(spark, config, checkpoint, thresholds)
    assert (first["batches"], first["rows"], first["read_now"]) == (2, 40, 40)  # one file per micro-batch

    def written() -> tuple[list[str], list[str]]:
        kept = [r["id"] for r in spark.read.parquet(str(out / "filtered")).select("id").collect()]
        dropped = [r["id"] for r in spark.read.parquet(str(out / "dropped")).select("id").collect()]
        return kept, dropped

    kept, dropped = written()
    assert sorted(kept + dropped) == sorted(ids) and kept and dropped
    assert len(kept) == first["kept_rows"]
    # the batch run's own decisions with the same thresholds (away from the threshold: fp32 rounding may differ)
    batch_kept = {r["id"] for r in spark.read.parquet(str(batch / "filtered")).collect()}
    score = schema.AGGREGATE
    rows = spark.read.parquet(str(out / "filtered")).collect() + spark.read.parquet(str(out / "dropped")).collect()
    near = {r["id"] for r in rows if abs(r[score] - r[schema.THRESHOLD]) < 1e-4}
    assert {i for i, keep in _decisions(rows, score).items() if keep} - near == batch_kept - near

    # a new file: the restart scores it alone
    ids += _write(tmp_path / "in" / "c.jsonl", "c", 15, 63)
    second = _stream(spark, config, checkpoint, thresholds)
    assert (second["batches"], second["rows"], second["read_now"]) == (3, 55, 15)
    # the last batch again, as after a kill between its writes and its commit: replaced, never added twice
    _replay_last_batch(checkpoint)
    third = _stream(spark, config, checkpoint, thresholds)
    assert (third["batches"], third["rows"], third["read_now"]) == (3, 55, 15)  # read and written again
    kept, dropped = written()
    assert sorted(kept + dropped) == sorted(ids)


def test_stream_refuses_on_the_driver(spark, gte_bundle, tmp_path):
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "a.jsonl", "a", 5, 64)
    config = _config(gte_bundle, [str(tmp_path / "in")], tmp_path / "out")
    with pytest.raises(InputError, match="thresholds.json"):  # no batch run has computed thresholds there
        start_stream(spark, config, str(tmp_path / "cp"))
    tables = _config(gte_bundle, [str(tmp_path / "in")], tmp_path / "out", **{"io.output_tables.filtered": "kept_docs"})
    with pytest.raises(InputError, match="output tables only as Delta"):
        start_stream(spark, tables, str(tmp_path / "cp"))
    (tmp_path / "out" / "filtered").mkdir(parents=True)
    (tmp_path / "out" / "filtered" / "_SUCCESS").touch()  # a batch run's filtered/: the stream would mix with it
    with pytest.raises(InputError, match="holds a batch run's output"):
        start_stream(spark, config, str(tmp_path / "cp"))
    assert not (tmp_path / "cp").exists()


def test_stream_from_a_delta_table_into_delta_exactly_once(spark, gte_bundle, tmp_path):
    require_connector("delta")
    source = str(tmp_path / "docs_delta")
    ids = []
    for part, seed in (("a", 71), ("b", 72)):
        rows = [{"id": f"{part}{i}", "text": d["text"], "language": d["language"]}
                for i, d in enumerate(generate_documents(15, seed=seed))]
        ids += [r["id"] for r in rows]
        spark.createDataFrame(rows, "id string, text string, language string").coalesce(1).write.format("delta").mode("append").save(source)
    batch = tmp_path / "batch"
    Job(spark, _config(gte_bundle, [source], batch, **{"io.input_format": "delta"})).run()
    out, checkpoint = tmp_path / "stream", tmp_path / "checkpoint"
    config = _config(gte_bundle, [source], out, **{"io.input_format": "delta", "io.output_format": "delta"})

    assert _stream(spark, config, checkpoint, batch / "thresholds.json")["rows"] == 30
    _replay_last_batch(checkpoint)  # Delta's txnAppId/txnVersion: the replayed append is skipped
    again = _stream(spark, config, checkpoint, batch / "thresholds.json")
    assert again["rows"] == 30 and again["read_now"] > 0
    kept = [r["id"] for r in spark.read.format("delta").load(str(out / "filtered")).collect()]
    dropped = [r["id"] for r in spark.read.format("delta").load(str(out / "dropped")).collect()]
    assert sorted(kept + dropped) == sorted(ids) and (out / "filtered" / "_delta_log").is_dir()


@pytest.mark.slow
def test_stream_killed_mid_batch_resumes_exactly_once_into_delta(spark, gte_bundle, tmp_path):
    """SIGKILL the stream's driver (and its JVM) after its first committed batch; the restart loses nothing and
    writes nothing twice."""
    require_connector("delta")
    source = str(tmp_path / "docs_delta")
    ids = []
    for part in range(6):
        rows = [{"id": f"p{part}-{i}", "text": d["text"], "language": d["language"]}
                for i, d in enumerate(generate_documents(10, seed=80 + part))]
        ids += [r["id"] for r in rows]
        spark.createDataFrame(rows, "id string, text string, language string").coalesce(1).write.format("delta").mode("append").save(source)
    batch = tmp_path / "batch"
    Job(spark, _config(gte_bundle, [source], batch, **{"io.input_format": "delta"})).run()
    out, checkpoint = tmp_path / "stream", tmp_path / "checkpoint"
    sets = {"io.input_format": "delta", "io.output_format": "delta"}
    conf = {**_lake_conf(tmp_path / "warehouse"), "spark.sql.shuffle.partitions": "2"}
    overrides = job_overrides(gte_bundle, [source], out, **sets, **{"spark.master": "local[1]", "spark.conf": json.dumps(conf)})
    cmd = [sys.executable, "-m", "spark_jql.cli", *as_cli_args(overrides), "stream", "--max-files-per-trigger", "1",
           "--thresholds", str(batch / "thresholds.json"), "--checkpoint", str(checkpoint)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYSPARK_PYTHON": sys.executable}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    markers = checkpoint / "jql_batches"
    deadline = time.time() + 300
    while time.time() < deadline and not list(markers.glob("batch-*.json")) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(markers.glob("batch-*.json")))
    assert 1 <= done < 6, f"kill landed after {done} batches"

    resumed = _stream(spark, _config(gte_bundle, [source], out, **sets), checkpoint, batch / "thresholds.json")
    assert resumed["rows"] == 60 and resumed["batches"] == 6
    kept = [r["id"] for r in spark.read.format("delta").load(str(out / "filtered")).collect()]
    dropped = [r["id"] for r in spark.read.format("delta").load(str(out / "dropped")).collect()]
    assert sorted(kept + dropped) == sorted(ids)


def test_annotate_and_apply_thresholds_on_a_streaming_dataframe(spark, gte_bundle, tmp_path):
    """The DataFrame functions on ``readStream`` (thresholds frozen from a batch run): each document lands in exactly
    one sink, as the same functions split it in batch."""
    from spark_jql.config import ColumnsConfig, ScorerConfig, ThresholdConfig
    from spark_jql.spark import annotate, apply_thresholds, compute_thresholds

    source = tmp_path / "in"
    source.mkdir()
    ids = _write(source / "a.jsonl", "a", 60, seed=31) + _write(source / "b.jsonl", "b", 60, seed=32)
    scorer, columns = ScorerConfig(**gte_bundle), ColumnsConfig(language=["language"])
    batch = spark.read.json(str(source)).transform(annotate, scorer).persist()
    thresholds = compute_thresholds(batch, ThresholdConfig(quantiles=[0.6], min_docs=5), columns)
    kept_batch, _ = apply_thresholds(batch, thresholds, quantile=0.6, columns=columns)
    expected_kept = {r["id"] for r in kept_batch.select("id").collect()}
    batch.unpersist()

    stream = spark.readStream.schema(spark.read.json(str(source)).schema).option("maxFilesPerTrigger", 1).json(str(source))
    assert stream.isStreaming
    kept, dropped = apply_thresholds(stream.transform(annotate, scorer), thresholds, quantile=0.6, columns=columns)
    for name, frame in (("kept", kept), ("dropped", dropped)):
        query = (frame.writeStream.format("parquet").option("path", str(tmp_path / name))
                 .option("checkpointLocation", str(tmp_path / f"checkpoint_{name}")).trigger(availableNow=True).start())
        query.awaitTermination()
        assert query.exception() is None
    got_kept = [r["id"] for r in spark.read.parquet(str(tmp_path / "kept")).select("id").collect()]
    got_dropped = [r["id"] for r in spark.read.parquet(str(tmp_path / "dropped")).select("id").collect()]
    assert sorted(got_kept + got_dropped) == sorted(ids)  # none lost, none twice
    assert set(got_kept) == expected_kept and expected_kept and set(got_dropped)
