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
    assert (tmp_path / "run" / "meta" / "thresholds.json").is_dir() == (route == "spark")
    if route == "spark":  # either route reads what the other wrote
        monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", "local")
        assert storage.read_text(spark, path) == text
        monkeypatch.setenv("SPARK_JQL_ARTIFACT_IO", "spark")
    storage.clear(spark, root)
    assert storage.read_texts(spark, storage.join_path(root, "meta")) == {}
    assert storage.list_files(spark, str(tmp_path / "nothing-*.json")) == []


def test_route_by_scheme(spark, monkeypatch):
    monkeypatch.delenv("SPARK_JQL_ARTIFACT_IO", raising=False)
    assert storage.is_local(spark, "file:///tmp/x") and storage.is_local(spark, "/tmp/x")  # local master
    for path in ["s3://bucket/x", "abfss://c@acct.dfs.core.windows.net/x", "dbfs:/x", "hdfs://nn/x", "gs://b/x"]:
        assert not storage.is_local(spark, path)
