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

from spark_jql.errors import InputError

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
            names += [f.name for f in Path(p).rglob("*")  # Spark skips _/. files and folders (_jql_units, _SUCCESS)
                      if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)]
        else:
            names.append(p.rsplit("/", 1)[-1])
    kinds = {"parquet" if n.endswith(PARQUET_SUFFIXES) else "json" if n.endswith(JSON_SUFFIXES) else None for n in names}
    kinds.discard(None)
    if len(kinds) != 1:
        raise InputError(
            f"cannot tell the input format from the file names {names[:5]}...; set io.input_format to parquet or json"
        )
    return kinds.pop()


def input_files(spark: SparkSession, patterns: list[str]) -> list[str]:
    """Every file the patterns match, sorted and de-duplicated; each pattern must match something."""
    if not patterns:
        raise InputError("no input given: set io.input (a path or glob, parquet or JSON lines)")
    paths: list[str] = []
    for pattern in patterns:
        matched = expand(spark, pattern)
        if not matched:
            raise InputError(f"input {pattern!r} matches no file")
        paths += matched
    return sorted(dict.fromkeys(paths))


CORRUPT = "_jql_corrupt_record"


def read_files(spark: SparkSession, paths: list[str], fmt: str, schema=None) -> DataFrame:
    """Read parquet or JSON lines without losing a record.

    JSON lines with invalid UTF-8 (which Spark's JSON parser rejects) are decoded
    with U+FFFD replacement characters and parsed again; a line that still is not
    JSON is an error naming its file, never a silent null row.
    """
    try:
        if fmt == "parquet":
            reader = spark.read.schema(schema) if schema is not None else spark.read
            return reader.parquet(*paths)
        return _read_json(spark, paths, schema)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {paths[:3]}{'...' if len(paths) > 3 else ''}: {_first_line(err)}") from err


def _json_reader(spark: SparkSession):
    return spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)


def input_schema(spark: SparkSession, paths: list[str], fmt: str):
    """The inputs' schema (JSON: inferred, without the corrupt-record column); no other pass over the data."""
    from pyspark.sql.types import StructType

    try:
        if fmt == "parquet":
            return spark.read.parquet(*paths).schema
        schema = StructType([f for f in _json_reader(spark).json(paths).schema.fields if f.name != CORRUPT])
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {paths[:3]}{'...' if len(paths) > 3 else ''}: {_first_line(err)}") from err
    if not schema.fields:
        raise InputError(f"JSON input {paths[:3]} holds no JSON objects")
    return schema


def _read_json(spark: SparkSession, paths: list[str], schema) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    data_schema = input_schema(spark, paths, "json") if schema is None else schema
    reader = _json_reader(spark)
    df = reader.schema(StructType(data_schema.fields + [StructField(CORRUPT, StringType())])).json(paths)
    broken = F.col(CORRUPT).isNotNull()
    # Re-encoding through a Java string replaces invalid UTF-8 with U+FFFD; then parse again.
    repaired = F.from_json(F.decode(F.encode(F.col(CORRUPT), "UTF-8"), "UTF-8"), data_schema)
    fixed = df.select(
        *[F.when(broken, repaired.getField(f.name)).otherwise(F.col(f"`{f.name}`")).alias(f.name) for f in data_schema.fields],
        (broken & repaired.isNull()).alias("__jql_malformed"),
        F.input_file_name().alias("__jql_file"),
    )
    # (Also naming a data column: Spark refuses queries that read only the corrupt-record column.)
    first = F.col(f"`{data_schema.fields[0].name}`")
    bad = fixed.where(F.col("__jql_malformed") & first.isNull()).select("__jql_file").distinct().limit(5).collect()
    if bad:
        raise InputError(f"malformed JSON records (not parseable even after UTF-8 repair) in {[r[0] for r in bad]}")
    return fixed.drop("__jql_malformed", "__jql_file")


def read_input(spark: SparkSession, patterns: list[str], input_format: str = "auto") -> DataFrame:
    """One DataFrame over all inputs (paths or globs)."""
    paths = input_files(spark, patterns)
    return read_files(spark, paths, detect_format(paths) if input_format == "auto" else input_format)


def find_bad_files(spark: SparkSession, paths: list[str], fmt: str, schema, text_column: str) -> list[tuple[str, str]]:
    """(file, error) for each file that cannot be read through to its text column."""
    from pyspark.sql import functions as F

    bad = []
    for path in paths:
        try:
            df = read_files(spark, [path], fmt, schema)
            df.agg(F.count(F.col("`" + text_column.replace("`", "``") + "`"))).collect()
        except Exception as err:  # corrupt footer, truncated gzip, malformed JSON, permissions
            bad.append((path, _first_line(err)[:500]))
    return bad


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
