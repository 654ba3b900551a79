"""Paths and small artifacts on any filesystem Spark can reach.

Input globs (local disk, S3, ABFS, DBFS, HDFS...) are expanded here so that a pattern
matching nothing is a clear error rather than an empty job; reading the inputs is
spark/inputs.py. Small text artifacts (thresholds, summaries) go through the same API.
"""

from __future__ import annotations

import glob as pyglob
from pathlib import Path

from pyspark.sql import SparkSession

from spark_jql.errors import InputError


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _hadoop_fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def expand(spark: SparkSession, pattern: str) -> list[str]:
    """Files (or directories) matching ``pattern``; empty list when nothing matches."""
    if _is_local(pattern):
        local = pattern[len("file://"):] if pattern.startswith("file://") else pattern
        return sorted(pyglob.glob(str(Path(local).expanduser())))
    fs, hpath = _hadoop_fs(spark, pattern)
    statuses = fs.globStatus(hpath)
    return sorted(s.getPath().toString() for s in statuses) if statuses else []


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file atomically enough for artifacts (temp file, then rename)."""
    if _is_local(path):
        target = Path(path[len("file://"):] if path.startswith("file://") else path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        return
    fs, hpath = _hadoop_fs(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def read_text(spark: SparkSession, path: str) -> str:
    if _is_local(path):
        target = Path(path[len("file://"):] if path.startswith("file://") else path)
        if not target.is_file():
            raise InputError(f"file not found: {path}")
        return target.read_text(encoding="utf-8")
    fs, hpath = _hadoop_fs(spark, path)
    if not fs.exists(hpath):
        raise InputError(f"file not found: {path}")
    stream = fs.open(hpath)
    try:
        jvm = spark.sparkContext._jvm
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def join_path(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(spark: SparkSession, path: str) -> bool:
    if _is_local(path):
        return Path(path[len("file://"):] if path.startswith("file://") else path).exists()
    fs, hpath = _hadoop_fs(spark, path)
    return bool(fs.exists(hpath))


def delete(spark: SparkSession, path: str) -> None:
    """Remove a file or directory tree (no error if absent)."""
    if _is_local(path):
        import shutil

        target = Path(path[len("file://"):] if path.startswith("file://") else path)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        return
    fs, hpath = _hadoop_fs(spark, path)
    fs.delete(hpath, True)
