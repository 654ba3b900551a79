"""Reading the job's input without losing a document: files (parquet, JSON lines) or a dataset.

Files are named by paths or globs; a dataset is a catalog table (``io.input_table``) or a
table format loaded by name (``io.input_format: delta``). Either way the input is a list of
:class:`InputFile` (path, size, modification time) -- what a unit of work is made of and what
the resume manifest compares -- and a reader that adds two private columns to every row:

* ``__jql_file``: the file the row came from;
* ``__jql_bad``: why the record cannot be scored, or null. JSON lines that are not JSON
  objects, a compressed file under a plain name (found by its magic bytes), a text value
  that is a number, list or object. Such a record never becomes an all-null row: the job
  fails naming the file and line, or skips it and counts it (``io.on_bad_file``).

JSON lines are read as text and parsed with ``from_json`` (PERMISSIVE, with a corrupt-record
field), because Spark's ``from_json`` returns a struct of nulls, not null, for a bad line.
Parquet schemas are merged across files (``mergeSchema``), so no file's extra column is
dropped; a file that lacks the text column is an error naming it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from spark_jql import schema
from spark_jql.errors import InputError, first_line
from spark_jql.paths import normalise
from spark_jql.spark.io import InputFile, list_files

FILE = "__jql_file"
BAD = "__jql_bad"
_LINE = "__jql_line"
_PARSED = "__jql_parsed"
_CORRUPT = "__jql_corrupt_record"
_INDEX = "__jql_index"
_GOOD_LINE = "__jql_good_line"
UNIT_COLUMN = "jql_unit"
RESERVED_PREFIXES = ("_jql", "__jql")

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz", ".json.bz2", ".jsonl.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq")
FILE_FORMATS = ("parquet", "json")
# Magic bytes (hex of the first bytes of a line) of compressed files that Spark only decompresses by name.
_MAGIC = {"1F8B": "gzip", "425A68": "bzip2", "28B52FFD": "zstd", "FD377A585A": "xz", "504B0304": "zip"}


# -- paths ------------------------------------------------------------------------------------------


def input_files(spark: SparkSession, patterns: list[str]) -> list[InputFile]:
    """Every file the patterns match with its size and modification time (one listing), sorted, de-duplicated.

    Each pattern must match something.
    """
    if not patterns:
        raise InputError("no input given: set io.input (a path or glob, parquet or JSON lines) or io.input_table")
    found: dict[str, InputFile] = {}
    for pattern in patterns:
        matched = list_files(spark, pattern)
        if not matched:
            raise InputError(f"input {pattern!r} matches no file")
        found.update((f.path, f) for f in matched)
    return [found[p] for p in sorted(found)]


def detect_format(paths: list[str]) -> str:
    names = [p.rsplit("/", 1)[-1] for p in paths]
    kinds = {"parquet" if n.endswith(PARQUET_SUFFIXES) else "json" if n.endswith(JSON_SUFFIXES) else None for n in names}
    kinds.discard(None)
    if len(kinds) != 1:
        raise InputError(
            f"cannot tell the input format from the file names {names[:5]}...; set io.input_format to parquet or json"
        )
    return kinds.pop()


# -- schemas ----------------------------------------------------------------------------------------


def check_reserved(columns: list[str], added: list[str], where: str) -> None:
    """Refuse input columns named like the ones spark_jql adds or uses internally (never overwrite them)."""
    taken = {c.lower() for c in [*added, UNIT_COLUMN, schema.THRESHOLD, schema.DROP_REASON]}
    clash = [c for c in columns if c.lower() in taken or c.lower().startswith(RESERVED_PREFIXES)]
    if clash:
        raise InputError(
            f"{where} has column(s) {clash} named like spark_jql's own ({UNIT_COLUMN}, {schema.AGGREGATE}, score_*, "
            f"names starting with _jql): rename or drop them before scoring"
        )


def file_schema(spark: SparkSession, paths: list[str], fmt: str, text_column: str) -> StructType:
    """The merged schema of all files (no extra data pass for parquet)."""
    try:
        if fmt == "parquet":
            return spark.read.option("mergeSchema", "true").parquet(*paths).schema
        reader = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", _CORRUPT)
        fields = [f for f in reader.json(paths).schema.fields if f.name != _CORRUPT]
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {_shown(paths)}: {first_line(err)}") from err
    if not fields:
        raise InputError(f"JSON input {_shown(paths)} holds no JSON objects")
    # A text column that is not a string at all is refused by the preflight; in a string column, a value that
    # is a number, list or object is flagged per record (see _nonstring), never stringified.
    return StructType(fields)


# -- reading ----------------------------------------------------------------------------------------


def read_files(spark: SparkSession, paths: list[str], fmt: str, data_schema: StructType, text_column: str) -> DataFrame:
    """The files' rows with ``__jql_file`` and ``__jql_bad`` (see the module docstring)."""
    try:
        if fmt == "parquet":
            df = spark.read.schema(data_schema).parquet(*paths)
            return df.select("*", F.input_file_name().alias(FILE), F.lit(None).cast("string").alias(BAD))
        return _json_records(spark, paths, data_schema, text_column).drop(_LINE)
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {_shown(paths)}: {first_line(err)}") from err


def _json_records(spark: SparkSession, paths: list[str], data_schema: StructType, text_column: str, index: bool = False) -> DataFrame:
    parse_schema = StructType(data_schema.fields + [StructField(_CORRUPT, StringType())])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    extra = [F.monotonically_increasing_id().alias(_INDEX)] if index else []
    keep = [_INDEX] if index else []
    lines = spark.read.text(paths).select(F.col("value").alias(_LINE), F.input_file_name().alias(FILE), *extra)
    if not index:  # Spark's JSON reader skips blank lines too; with index, line numbers must count them
        lines = lines.where(F.length(F.trim(F.col(_LINE))) > 0)
    first = lines.select("*", F.from_json(F.col(_LINE), parse_schema, options).alias(_PARSED))
    broken = F.col(_PARSED).isNull() | F.col(_PARSED).getField(_CORRUPT).isNotNull()
    # Invalid UTF-8 makes Jackson give up: decode with U+FFFD replacement characters and parse again.
    repaired_line = F.decode(F.encode(F.col(_LINE), "UTF-8"), "UTF-8")
    repaired = F.from_json(repaired_line, parse_schema, options)
    parsed = first.select(
        _LINE, F.when(broken, repaired_line).otherwise(F.col(_LINE)).alias(_GOOD_LINE), FILE, *keep,
        F.when(broken, repaired).otherwise(F.col(_PARSED)).alias(_PARSED),
    )
    record = F.col(_PARSED)
    still_broken = record.isNull() | record.getField(_CORRUPT).isNotNull()
    reason = F.when(still_broken, _malformed_reason(F.col(_LINE)))
    if any(f.name == text_column and isinstance(f.dataType, StringType) for f in data_schema.fields):
        reason = reason.when(_nonstring(F.col(_GOOD_LINE), record.getField(text_column), text_column),
                             F.lit(f"text column {text_column!r} holds a JSON value that is not a string"))
    return parsed.select(
        *[record.getField(f.name).alias(f.name) for f in data_schema.fields], FILE, reason.alias(BAD), _LINE, *keep,
    )


def _malformed_reason(line: Column) -> Column:
    head = F.hex(F.substring(line, 1, 5))  # hex of the raw bytes, before any UTF-8 decoding
    out = None
    for magic, kind in _MAGIC.items():
        cond = head.startswith(magic)
        msg = F.lit(f"the file is {kind}-compressed (found by its first bytes) but its name does not say so; "
                    f"name it with its compression suffix (e.g. .jsonl.gz) so Spark decompresses it")
        out = F.when(cond, msg) if out is None else out.when(cond, msg)
    return out.otherwise(F.lit("not a JSON object"))


def _nonstring(line: Column, text: Column, text_column: str) -> Column:
    """The record's text value is a JSON number, boolean, list or object (Spark would hand over its JSON text)."""
    def parses_as(dtype) -> Column:
        probe = StructType([StructField(text_column, dtype)])
        return F.from_json(line, probe, {"mode": "PERMISSIVE"}).getField(text_column).isNotNull()

    # Only values whose text could be a non-string JSON value are parsed again, with the matching type.
    return (
        F.when(text.startswith("{"), parses_as(MapType(StringType(), StringType())))
        .when(text.startswith("["), parses_as(ArrayType(StringType())))
        .when(text.rlike(r"^-?[0-9]"), parses_as(DoubleType()))
        .when(text.isin("true", "false"), parses_as(BooleanType()))
        .otherwise(F.lit(False))
    )


def first_bad_line(spark: SparkSession, path: str, data_schema: StructType, text_column: str) -> tuple[int, str, str] | None:
    """(line number, reason, the line's start) of the first bad record of a JSON lines file."""
    records = _json_records(spark, [path], data_schema, text_column, index=True)
    row = records.where(F.col(BAD).isNotNull()).orderBy(_INDEX).select(_INDEX, BAD, _LINE).first()
    if row is None:
        return None
    number = records.where(F.col(_INDEX) <= row[_INDEX]).count()
    return number, row[BAD], row[_LINE][:80]


def read_dataset(spark: SparkSession, table: str | None, path: str | None, fmt: str) -> DataFrame:
    """A catalog table, or a table format (delta, iceberg, ...) loaded from a path."""
    try:
        frame = spark.table(table) if table else spark.read.format(fmt).load(path)
        frame.schema  # Spark Connect resolves lazily: analyse here, so a missing table fails inside this try
        return frame
    except Exception as err:
        what = f"table {table!r}" if table else f"{fmt} input {path!r}"
        raise InputError(f"cannot read {what}: {first_line(err)}") from err


def dataset_files(df: DataFrame) -> list[InputFile] | None:
    """The dataset's files with size and modification time (one metadata-only pass); None if it has no files."""
    meta = "_metadata"
    try:
        rows = df.select(
            F.col(f"{meta}.file_path").alias("p"), F.col(f"{meta}.file_size").alias("s"),
            F.col(f"{meta}.file_modification_time").alias("t"),
        ).distinct().collect()
    except Exception:
        return None
    return sorted((InputFile(r["p"], int(r["s"]), r["t"].timestamp()) for r in rows), key=lambda f: f.path)


def dataset_rows(df: DataFrame, paths: list[str] | None) -> DataFrame:
    """The dataset's rows from ``paths`` (file pruning on ``_metadata.file_path``), with the private columns."""
    file_col = F.col("_metadata.file_path") if paths is not None else F.lit(None).cast("string")
    rows = df.where(file_col.isin(paths)) if paths is not None else df
    return rows.select("*", file_col.alias(FILE), F.lit(None).cast("string").alias(BAD))


def documents(spark: SparkSession, paths: list[str], fmt: str, data_schema: StructType, text_column: str) -> DataFrame:
    """The files' rows without the private columns; a bad record fails the query naming its file (no extra pass)."""
    df = read_files(spark, paths, fmt, data_schema, text_column)
    if fmt == "parquet":
        return df.drop(FILE, BAD)
    message = F.concat(F.lit("bad input record in "), F.col(FILE), F.lit(": "), F.col(BAD))
    return df.where(F.when(F.col(BAD).isNotNull(), F.raise_error(message)).otherwise(F.lit(True))).drop(FILE, BAD)


def read_input(spark: SparkSession, patterns: list[str], input_format: str = "auto", text_column: str = "text") -> DataFrame:
    """One DataFrame over all inputs (paths or globs), for stages that read the whole input at once."""
    paths = [f.path for f in input_files(spark, patterns)]
    fmt = detect_format(paths) if input_format == "auto" else input_format
    if fmt not in FILE_FORMATS:
        return read_dataset(spark, None, paths[0], fmt)
    return documents(spark, paths, fmt, file_schema(spark, paths, fmt, text_column), text_column)


def find_bad_files(spark: SparkSession, paths: list[str], fmt: str, data_schema, text_column: str) -> list[tuple[str, str]]:
    """(file, error) for each file that cannot be read through, every column of it."""
    bad = []
    for path in paths:
        try:
            s = data_schema if data_schema is not None else file_schema(spark, [path], fmt, text_column)
            read_files(spark, [path], fmt, s, text_column).write.format("noop").mode("overwrite").save()
        except Exception as err:  # corrupt footer, truncated gzip, a type clash in any column, permissions
            bad.append((path, first_line(err)[:500]))
    return bad


def _shown(paths: list[str]) -> str:
    return f"{paths[:3]}{'...' if len(paths) > 3 else ''}"


class Source:
    """The job's input, resolved once: its files (what units are made of) and how to read some of them."""

    def __init__(self, spark: SparkSession, io, text_column: str):
        self.spark = spark
        self.text_column = text_column
        self.dataset: DataFrame | None = None
        if io.input_table is not None or io.input_format not in ("auto", *FILE_FORMATS):
            path = None if io.input_table else normalise(io.input[0]) if io.input else None
            if io.input_table is None and path is None:
                raise InputError(f"io.input_format {io.input_format!r} needs the table's path in io.input")
            self.fmt = "table" if io.input_table else io.input_format
            self.label = io.input_table or path
            self.dataset = read_dataset(spark, io.input_table, path, io.input_format)
            files = dataset_files(self.dataset)
            # Without file metadata (a view, a JDBC table) the whole dataset is one unit that cannot be checked.
            self.by_file = files is not None
            self.files = files if files is not None else [InputFile(f"{self.fmt}:{self.label}")]
        else:
            self.files = input_files(spark, io.input)
            paths = [f.path for f in self.files]
            self.fmt = detect_format(paths) if io.input_format == "auto" else io.input_format
            self.label = ", ".join(io.input)
            self.by_file = True

    @property
    def is_files(self) -> bool:
        return self.dataset is None

    def schema(self, paths: list[str] | None = None) -> StructType:
        if self.dataset is not None:
            return self.dataset.schema
        return file_schema(self.spark, paths or [f.path for f in self.files], self.fmt, self.text_column)

    def read(self, paths: list[str], data_schema: StructType) -> DataFrame:
        if self.dataset is not None:
            return dataset_rows(self.dataset, paths if self.by_file else None)
        return read_files(self.spark, paths, self.fmt, data_schema, self.text_column)
