"""One answer to "is this path local?": config validation, input listing and artifacts agree on every spelling."""

from __future__ import annotations

import os

import pytest

from spark_jql import paths
from spark_jql.config import IOConfig, output_overlaps_input
from spark_jql.layout import OutputLayout
from spark_jql.spark import inputs, storage
from spark_jql.spark.io import list_files

LOCAL = ["file:///tmp/jql/x", "file:/tmp/jql/x", "data/jql/x", "/tmp/jql/x", "/dbfs/mnt/jql/x",
         "/Volumes/main/default/vol/x"]
REMOTE = ["dbfs:/jql/x", "dbfs:/Volumes/main/default/vol/x", "s3://bucket/jql/x", "s3a://bucket/jql/x",
          "abfss://c@acct.dfs.core.windows.net/jql/x", "gs://bucket/jql/x", "hdfs://nn:8020/jql/x"]


def _config_sees_local_file(path: str) -> bool:
    """Config validation: is an output under ``path`` inside the local folder this machine calls ``path``?"""
    local_spelling = os.path.join(os.getcwd(), paths.local_path(path))
    return output_overlaps_input(paths.join(path, "out"), [local_spelling]) is not None


def _inputs_see_local_file(path: str) -> bool:
    """Input listing: a normalised input path is a plain absolute path exactly when the file is local."""
    return inputs.normalise(path).startswith("/")


@pytest.mark.parametrize("path", LOCAL + REMOTE)
def test_every_caller_classifies_alike(spark, monkeypatch, path):
    monkeypatch.delenv("SPARK_JQL_ARTIFACT_IO", raising=False)
    local = path in LOCAL
    assert paths.is_remote(path) is not local
    assert _config_sees_local_file(path) is local
    assert _inputs_see_local_file(path) is local
    assert storage.is_local(spark, path) is local  # the test session's default filesystem is this disk


@pytest.mark.parametrize("path", LOCAL + REMOTE)
def test_on_a_cluster_filesystem_only_plain_paths_change_side(spark, monkeypatch, path):
    """Where the default filesystem is HDFS or DBFS, plain paths mean it; FUSE mounts and file: stay local."""
    monkeypatch.delenv("SPARK_JQL_ARTIFACT_IO", raising=False)
    monkeypatch.setattr(storage, "_default_fs_is_local", lambda spark: False)
    plain = paths.scheme(path) is None and not paths.is_fuse(path)
    assert storage.is_local(spark, path) is (path in LOCAL and not plain)


def test_one_spelling_per_file(tmp_path):
    assert paths.normalise("dbfs:///Volumes/a/../b") == paths.normalise("dbfs:/Volumes/b") == "dbfs:/Volumes/b"
    assert paths.normalise("s3a://bucket/a/./b/../c") == "s3a://bucket/a/c"
    assert paths.normalise(f"file://{tmp_path}/a%20b.jsonl") == paths.normalise(f"{tmp_path}/x/../a b.jsonl")
    assert paths.normalise(f"file:{tmp_path}/a") == str(tmp_path.resolve() / "a")
    assert paths.local_view("dbfs:/Volumes/c/s/v/r.html") == "/Volumes/c/s/v/r.html"
    assert paths.local_view("dbfs:/tmp/r.html") == "/dbfs/tmp/r.html" and paths.local_view("s3://b/r.html") is None


def test_inside_and_roots_on_every_filesystem():
    assert paths.is_inside("dbfs:/Volumes/c/s/v/in/out", "dbfs:/Volumes/c/s/v/in")
    assert not paths.is_inside("dbfs:/Volumes/c/s/v/in", "/Volumes/c/s/v")  # another filesystem
    assert not paths.is_inside("s3://b/inputs2", "s3://b/inputs")
    for root in ["", "/", "file:///", "s3://bucket/", "dbfs:/", "gs://b"]:
        assert paths.is_filesystem_root(root), root
    assert not paths.is_filesystem_root("dbfs:/Volumes/c/s/v/run")


def test_config_refuses_an_output_inside_a_remote_input():
    with pytest.raises(ValueError, match="lies inside the input"):
        IOConfig(input=["dbfs:/Volumes/c/s/v/in"], output="dbfs:///Volumes/c/s/v/in/run")
    with pytest.raises(ValueError, match="root of a filesystem"):
        IOConfig(input=["s3://b/in"], output="dbfs:/")
    IOConfig(input=["dbfs:/Volumes/c/s/v/in"], output="/Volumes/c/s/v/in/run")  # FUSE: another filesystem
    assert "filtered" in output_overlaps_input("s3://b/run", ["s3://b/run/filtered/part-0.parquet"])


def test_output_layout_names_every_artifact_once():
    layout = OutputLayout("s3://b/run/")
    assert layout.job_paths() == {
        "scored": "s3://b/run/scored", "stats": "s3://b/run/stats", "thresholds": "s3://b/run/thresholds.json",
        "filtered": "s3://b/run/filtered", "dropped": "s3://b/run/dropped", "summary": "s3://b/run/summary.json",
    }
    assert "s3://b/run/embeddings" in layout.replaced_folders


@pytest.mark.parametrize("route", ["local", "spark"])
def test_inputs_are_listed_once_with_size_and_time(spark, tmp_path, monkeypatch, route):
    """Both routes (Python's glob, Spark's binaryFile listing) give the same files, sizes and times in one pass."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "in" / "sub" / "b.jsonl").write_text('{"text": "bb"}\n')
    (tmp_path / "in" / "sub" / "empty.jsonl").write_text("")
    (tmp_path / "in" / "_SUCCESS").write_text("")
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", route)
    files = inputs.input_files(spark, [f"file://{tmp_path}/in/*.jsonl", str(tmp_path / "in" / "sub")])
    found = tmp_path.resolve() / "in"
    assert [(f.path, f.size) for f in files] == [(str(found / "a.jsonl"), 14), (str(found / "sub/b.jsonl"), 15),
                                                 (str(found / "sub/empty.jsonl"), 0)]
    assert all(abs(f.mtime - os.stat(f.path).st_mtime) < 1.0 for f in files if f.size)
    assert list_files(spark, str(tmp_path / "nothing-*.json")) == []


def test_partition_base_finds_data_partitions_but_not_the_unit_layout():
    """``lang=srp/`` below the named folder is a partition column; spark_jql's own ``jql_unit=N/`` (an output
    read back, as ``judge --retry-failed`` does) is not, and a single file named by itself never has one."""
    data = ["/d/lang=srp/a.parquet", "/d/lang=deu/b.parquet"]
    assert inputs.partition_base(["/d"], data) == "/d"
    assert inputs.partition_base(["/d/*/*.parquet"], data) == "/d"
    assert inputs.partition_base(["/d/lang=srp/a.parquet"], data[:1]) is None
    units = ["/run/judged/jql_unit=00000/part-0.parquet", "/run/judged/jql_unit=00001/part-0.parquet"]
    assert inputs.partition_base(["/run/judged"], units) is None
    with pytest.raises(Exception, match="several folders"):
        inputs.partition_base(["/d", "/e"], data + ["/e/lang=x/c.parquet"])
