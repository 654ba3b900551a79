"""Reading inputs and writing small artifacts on any filesystem Spark can reach.

Inputs are parquet or JSON lines (gzip included), given as paths or globs on
local disk, S3, ABFS, DBFS, HDFS... Globs are expanded with Hadoop's FileSystem
so that a pattern matching nothing is a clear error rather than an empty job.
Small text artifacts (thresholds, summaries) go through the same FileSystem API.
"""

from __future__ import annotations

import glob as pyglob
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from ..errors import InputError

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz", ".json.bz2", ".jsonl.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq")


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


def detect_format(paths: list[str]) -> str:
    names = []
    for p in paths:
        if _is_local(p) and Path(p).is_dir():
            names += [f.name for f in Path(p).rglob("*") if f.is_file() and not f.name.startswith((".", "_"))]
        else:
            names.append(p.rsplit("/", 1)[-1])
    kinds = {"parquet" if n.endswith(PARQUET_SUFFIXES) else "json" if n.endswith(JSON_SUFFIXES) else None for n in names}
    kinds.discard(None)
    if len(kinds) != 1:
        raise InputError(
            f"cannot tell the input format from the file names {names[:5]}...; set io.input_format to parquet or json"
        )
    return kinds.pop()


def read_input(spark: SparkSession, patterns: list[str], input_format: str = "auto") -> DataFrame:
    """One DataFrame over all inputs; each pattern must match something."""
    if not patterns:
        raise InputError("no input given: set io.input (a path or glob, parquet or JSON lines)")
    paths: list[str] = []
    for pattern in patterns:
        matched = expand(spark, pattern)
        if not matched:
            raise InputError(f"input {pattern!r} matches no file")
        paths += matched
    fmt = detect_format(paths) if input_format == "auto" else input_format
    reader = spark.read.option("mode", "FAILFAST")
    try:
        return reader.parquet(*paths) if fmt == "parquet" else reader.json(paths)
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {paths[:3]}{'...' if len(paths) > 3 else ''}: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


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
