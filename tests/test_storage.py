"""Small artifacts on both routes: plain local files, and through Spark (any filesystem, Connect-safe)."""

from __future__ import annotations

import pytest

from spark_jql.errors import InputError
from spark_jql.spark import storage


@pytest.mark.parametrize("route", ["local", "spark"])
def test_artifacts_round_trip(spark, tmp_path, monkeypatch, route):
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", route)
    root = str(tmp_path / "run")
    path = storage.join_path(root, "meta", "thresholds.json")
    assert not storage.exists(spark, path) and storage.read_texts(spark, storage.join_path(root, "meta")) == {}
    with pytest.raises(InputError, match="file not found"):
        storage.read_text(spark, path)
    text = '{"a": 1,\n "b": "ü"}\n\n'
    storage.write_text(spark, path, text)
    storage.write_text(spark, path, text)  # replaces
    storage.write_text(spark, storage.join_path(root, "meta", "unit-00001.json"), "")
    assert storage.exists(spark, path) and storage.read_text(spark, path) == text
    assert storage.read_texts(spark, storage.join_path(root, "meta")) == {"thresholds.json": text, "unit-00001.json": ""}
    assert (tmp_path / "run" / "meta" / "thresholds.json").is_file()  # one file a user can open, on both routes
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", "local" if route == "spark" else "spark")
    assert storage.read_text(spark, path) == text  # either route reads what the other wrote
    monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", route)
    storage.clear(spark, root)
    assert storage.read_texts(spark, storage.join_path(root, "meta")) == {}


def test_route_by_scheme(spark, monkeypatch):
    monkeypatch.delenv("SPARK_JQL_ARTIFACT_IO", raising=False)
    assert storage.is_local(spark, "file:///tmp/x") and storage.is_local(spark, "/tmp/x")  # local master
    for path in ["s3://bucket/x", "abfss://c@acct.dfs.core.windows.net/x", "dbfs:/x", "hdfs://nn/x", "gs://b/x"]:
        assert not storage.is_local(spark, path)


def test_a_remote_artifact_is_one_file_replacing_the_folder_form(spark, tmp_path, monkeypatch):
    """A path storage treats as remote (a file: URI forced through the Spark route) still ends as one file."""
    path = f"file://{tmp_path}/run/report.html"
    monkeypatch.setattr(storage, "is_local", lambda spark, path: False)
    spark.createDataFrame([("old",)], "value string").coalesce(1).write.text(path)  # the folder form of before
    assert (tmp_path / "run" / "report.html").is_dir()
    assert storage.write_text(spark, path, "<html>ü</html>") == path
    assert (tmp_path / "run" / "report.html").read_text(encoding="utf-8") == "<html>ü</html>"
    assert storage.read_text(spark, path) == "<html>ü</html>" and storage.exists(spark, path)
    assert [p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")] == ["report.html"]
