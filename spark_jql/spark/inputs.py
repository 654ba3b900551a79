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
Whitespace-only lines (tabs included) are skipped; a line holding two JSON values (``{...}{...}``,
which ``from_json`` would read as its first) is a bad record. Parquet schemas are merged across
files (``mergeSchema``), so no file's extra column is dropped; files whose column types clash are
named with the column and both types; a file that lacks the text column (or key) is a bad file.
Hive-style ``key=value`` directories below the folder named in ``io.input`` are partition
columns, as when Spark reads that folder (``basePath``).
"""

from __future__ import annotations

import re

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
from spark_jql.errors import InputError, first_line, spark_cause
from spark_jql.paths import normalise
from spark_jql.spark.io import InputFile, list_files
from spark_jql.spark.sources import missing_source

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


_GLOB = re.compile(r"[*?\[{]")
_PARTITION_DIR = re.compile(r"^[^=/]+=[^/]*$")


def partition_base(patterns: list[str], files: list[str]) -> str | None:
    """The folder the input was named by, when files lie in hive-style ``key=value`` directories below it.

    Spark reads such directories as partition columns when it is given the folder (or a glob in it); spark_jql
    reads files one unit at a time, so it names that folder as Spark's ``basePath``. A single file named by
    itself has no partition columns (as in Spark). Inputs from several folders with partition directories
    below them are refused: Spark takes one ``basePath``. spark_jql's own ``jql_unit=N`` folders (an output read
    back, as ``judge --retry-failed`` does) are its layout, not the data's: they add no column."""
    roots = set()
    for pattern in patterns:
        path = normalise(pattern).rstrip("/")
        glob = _GLOB.search(path)
        if glob:
            roots.add(path[: glob.start()].rsplit("/", 1)[0])
        elif any(f.startswith(path + "/") for f in files):
            roots.add(path)  # a folder
        else:
            roots.add(path.rsplit("/", 1)[0])  # a file: its own folder, never a partition
    def partitioned(root: str) -> bool:  # Spark reads key=value directories upwards from a file's own folder
        folders = [f[len(root) + 1:].split("/")[:-1] for f in files if f.startswith(root + "/")]
        return any(parts and _PARTITION_DIR.match(parts[-1]) and not parts[-1].startswith(f"{UNIT_COLUMN}=")
                   for parts in folders)

    with_partitions = sorted(r for r in roots if partitioned(r))
    if not with_partitions:
        return None
    if len(roots) > 1:
        raise InputError(f"input files lie in hive-style partition directories (key=value/) below {with_partitions[0]}, "
                         f"but io.input names several folders ({sorted(roots)[:3]}); give their one parent folder or "
                         "one glob so the partition columns are read the same way for every file")
    return with_partitions[0]


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


def _reader(spark: SparkSession, base: str | None):
    """A reader that finds hive-style partition columns (``lang=srp/``) below ``base``, as Spark does for a folder."""
    return spark.read.option("basePath", base) if base else spark.read


def file_schema(spark: SparkSession, paths: list[str], fmt: str, text_column: str, base: str | None = None) -> StructType:
    """The merged schema of all files, partition columns last (no extra data pass for parquet)."""
    try:
        if fmt == "parquet":
            return _reader(spark, base).option("mergeSchema", "true").parquet(*paths).schema
        reader = _reader(spark, base).option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", _CORRUPT)
        fields = [f for f in reader.json(paths).schema.fields if f.name != _CORRUPT]
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {_shown(paths)}: {first_line(err)}") from err
    if not fields:
        raise InputError(f"JSON input {_shown(paths)} holds no JSON objects")
    # A text column that is not a string at all is refused by the preflight; in a string column, a value that
    # is a number, list or object is flagged per record (see _nonstring), never stringified.
    return StructType(fields)


# -- reading ----------------------------------------------------------------------------------------


def read_files(spark: SparkSession, paths: list[str], fmt: str, data_schema: StructType, text_column: str,
               base: str | None = None) -> DataFrame:
    """The files' rows with ``__jql_file`` and ``__jql_bad`` (see the module docstring)."""
    try:
        if fmt == "parquet":
            df = _reader(spark, base).schema(data_schema).parquet(*paths)
            return df.select("*", F.input_file_name().alias(FILE), F.lit(None).cast("string").alias(BAD))
        return _json_records(spark, paths, data_schema, text_column, base=base).drop(_LINE)
    except Exception as err:
        raise InputError(f"cannot read {fmt} input {_shown(paths)}: {first_line(err)}") from err


def _json_records(spark: SparkSession, paths: list[str], data_schema: StructType, text_column: str, index: bool = False,
                  base: str | None = None) -> DataFrame:
    text = _reader(spark, base).text(paths)
    partitions = [c for c in text.columns if c != "value"]  # from the directories: their value wins, as in Spark
    parse_schema = StructType([f for f in data_schema.fields if f.name not in partitions] + [StructField(_CORRUPT, StringType())])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    extra = [F.monotonically_increasing_id().alias(_INDEX)] if index else []
    keep = [_INDEX, *partitions] if index else partitions
    lines = text.select(F.col("value").alias(_LINE), F.input_file_name().alias(FILE), *extra, *[f"`{c}`" for c in partitions])
    blank = F.col(_LINE).rlike(r"^\s*$")  # any whitespace, tabs included (F.trim strips spaces only)
    if not index:  # Spark's JSON reader skips blank lines too; with index, line numbers must count them
        lines = lines.where(~blank)
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
    reason = F.when(blank, F.lit(None)).when(still_broken, _malformed_reason(F.col(_LINE)))
    # from_json reads the first JSON value of a line and ignores the rest: `{...}{...}` would lose a document.
    values = F.expr(f"json_array_length(concat('[', `{_GOOD_LINE}`, ']'))")
    reason = reason.when(values.isNull() | (values != 1), F.lit(
        "more than one JSON value on one line (a missing line break between two documents?)"))
    if any(f.name == text_column and isinstance(f.dataType, StringType) for f in data_schema.fields):
        reason = reason.when(_nonstring(F.col(_GOOD_LINE), record.getField(text_column), text_column),
                             F.lit(f"text column {text_column!r} holds a JSON value that is not a string"))
    fields = [F.col(f"`{f.name}`").cast(f.dataType) if f.name in partitions else record.getField(f.name) for f in data_schema.fields]
    return parsed.select(
        *[c.alias(f.name) for c, f in zip(fields, data_schema.fields)], FILE, reason.alias(BAD), _LINE,
        *([_INDEX] if index else []),
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


def first_bad_line(spark: SparkSession, path: str, data_schema: StructType, text_column: str,
                   base: str | None = None) -> tuple[int, str, str] | None:
    """(line number, reason, the line's start) of the first bad record of a JSON lines file."""
    records = _json_records(spark, [path], data_schema, text_column, index=True, base=base)
    row = records.where(F.col(BAD).isNotNull()).orderBy(_INDEX).select(_INDEX, BAD, _LINE).first()
    if row is None:
        return None
    number = records.where(F.col(_INDEX) <= row[_INDEX]).count()
    return number, row[BAD], row[_LINE][:80]


def read_dataset(spark: SparkSession, table: str | None, path: str | None, fmt: str) -> DataFrame:
    """A catalog table, or a table format (delta, iceberg, ...) loaded from a path."""
    try:
        frame = spark.table(table) if table else spark.read.format(fmt).load(path)
        frame.schema  # Spark Connect resolves lazily: analyse here, so a missing table or source fails inside this try
        return frame
    except Exception as err:
        missing = None if table else missing_source(err, fmt, "io.input_format")
        if missing is not None:
            raise missing from None
        what = f"table {table!r}" if table else f"{fmt} input {path!r}"
        raise InputError(f"cannot read {what}: {spark_cause(err)}") from err


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


def iceberg_files(spark: SparkSession, table: str | None, path: str | None) -> list[InputFile] | None:
    """An Iceberg table's data files from its ``files`` metadata table (path, size; Iceberg never rewrites a file
    in place), rows read by the ``_file`` column; None if it is not an Iceberg table (no such metadata table).

    With row-level delete files (merge-on-read updates and deletes) the rows are not a function of the data files:
    the whole table is then one unit named by its current snapshot, so any new commit starts the scoring over.
    """
    def meta(name: str) -> DataFrame:
        return spark.table(f"{table}.{name}") if table else spark.read.format("iceberg").load(f"{path}#{name}")

    try:
        rows = meta("files").select("content", "file_path", "file_size_in_bytes").collect()
    except Exception:
        return None
    if any(r["content"] != 0 for r in rows):
        current = meta("snapshots").orderBy(F.desc("committed_at")).select("snapshot_id").first()
        return [InputFile(f"iceberg:{table or path}@snapshot-{current['snapshot_id']}")]
    return sorted((InputFile(r["file_path"], int(r["file_size_in_bytes"]), 0.0) for r in rows), key=lambda f: f.path)


def dataset_version(spark: SparkSession, table: str | None, path: str | None, fmt: str) -> dict | None:
    """The commit a run reads (Delta table version, Iceberg snapshot id) for the summary; None for other datasets."""
    if fmt in ("auto", "delta") and (table or path):
        try:
            ref = table or f"delta.`{path}`"
            return {"delta_version": int(spark.sql(f"DESCRIBE HISTORY {ref} LIMIT 1").first()["version"])}
        except Exception:
            pass
    if fmt in ("auto", "iceberg") and (table or path):
        try:
            snapshots = spark.table(f"{table}.snapshots") if table else spark.read.format("iceberg").load(f"{path}#snapshots")
            return {"iceberg_snapshot": int(snapshots.orderBy(F.desc("committed_at")).first()["snapshot_id"])}
        except Exception:
            pass
    return None


def dataset_rows(df: DataFrame, paths: list[str] | None, file_column: str = "_metadata.file_path") -> DataFrame:
    """The dataset's rows from ``paths`` (file pruning on ``file_column``), with the private columns."""
    file_col = F.col(file_column) if paths is not None else F.lit(None).cast("string")
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


def find_bad_files(spark: SparkSession, paths: list[str], fmt: str, data_schema, text_column: str,
                   base: str | None = None) -> list[tuple[str, str]]:
    """(file, error) for each file that cannot be read through, every column of it."""
    bad = []
    for path in paths:
        try:
            s = data_schema if data_schema is not None else file_schema(spark, [path], fmt, text_column, base)
            read_files(spark, [path], fmt, s, text_column, base).write.format("noop").mode("overwrite").save()
        except Exception as err:  # corrupt footer, truncated gzip, a type clash in any column, permissions
            if fmt == "json" and data_schema is None and _no_lines(spark, path):
                continue  # an empty file (or blank lines only) holds no record to lose: not a bad file
            bad.append((path, first_line(err)[:500]))
    return bad


def _no_lines(spark: SparkSession, path: str) -> bool:
    """The file reads through and holds no line but blank ones (a truncated gzip is not empty: it fails to read)."""
    try:
        return spark.read.text(path).where(F.regexp_replace("value", r"\s+", "") != "").limit(1).count() == 0
    except Exception:  # noqa: BLE001 - unreadable: the caller's error stands
        return False


def type_clashes(spark: SparkSession, paths: list[str]) -> list[tuple[str, str]]:
    """(file, why) for each parquet file that gives a column another type than most files do (footers only).

    Spark's merged-schema error names neither the files nor the column; this names all three."""
    by_column: dict[str, dict[str, list[str]]] = {}  # column -> type -> files
    for path in paths:
        try:
            fields = spark.read.parquet(path).schema.fields
        except Exception:  # noqa: BLE001 - an unreadable footer is find_bad_files' to name
            continue
        for f in fields:
            nested = isinstance(f.dataType, (StructType, ArrayType, MapType))  # may still merge: compare the kind only
            kind = type(f.dataType).__name__ if nested else f.dataType.simpleString()
            by_column.setdefault(f.name, {}).setdefault(kind, []).append(path)
    bad: dict[str, str] = {}
    for column, by_type in by_column.items():
        if len(by_type) < 2:
            continue
        (usual, usual_files), *others = sorted(by_type.items(), key=lambda kv: (-len(kv[1]), min(kv[1])))
        more = f" and {len(usual_files) - 1} other file(s)" if len(usual_files) > 1 else ""
        for kind, files in others:
            for path in files:
                bad.setdefault(normalise(path), f"column {column!r} is {kind} in this file but {usual} in "
                                                f"{normalise(usual_files[0])}{more} (parquet types must agree between files)")
    return sorted(bad.items())


def _shown(paths: list[str]) -> str:
    return f"{paths[:3]}{'...' if len(paths) > 3 else ''}"


class Source:
    """The job's input, resolved once: its files (what units are made of) and how to read some of them."""

    def __init__(self, spark: SparkSession, io, text_column: str):
        self.spark = spark
        self.text_column = text_column
        self.dataset: DataFrame | None = None
        self.skipped: dict[str, str] = {}  # file -> why: found unusable while reading the schema (io.on_bad_file=skip)
        self.base: str | None = None  # the folder below which directories name partition columns (``lang=srp/``)
        self.version: dict | None = None  # a lake table's commit (summary: which version or snapshot was scored)
        if io.input_table is not None or io.input_format not in ("auto", *FILE_FORMATS):
            path = None if io.input_table else normalise(io.input[0]) if io.input else None
            if io.input_table is None and path is None:
                raise InputError(f"io.input_format {io.input_format!r} needs the table's path in io.input")
            self.fmt = "table" if io.input_table else io.input_format
            self.label = io.input_table or path
            self.version = dataset_version(spark, io.input_table, path, io.input_format)
            self.dataset = read_dataset(spark, io.input_table, path, io.input_format)
            files = dataset_files(self.dataset)
            self.file_column = "_metadata.file_path"
            if files is None and io.input_format in ("auto", "iceberg"):  # Iceberg has no _metadata column
                files = iceberg_files(spark, io.input_table, path)
                self.file_column = "_file"
            # Without file metadata (a view, a JDBC table) the whole dataset is one unit that cannot be checked.
            self.by_file = files is not None and not any(f.path.startswith("iceberg:") for f in files)
            self.files = files if files is not None else [InputFile(f"{self.fmt}:{self.label}")]
        else:
            self.files = input_files(spark, io.input)
            paths = [f.path for f in self.files]
            self.fmt = detect_format(paths) if io.input_format == "auto" else io.input_format
            self.label = ", ".join(io.input)
            self.by_file = True
            self.base = partition_base(io.input, [f.path for f in self.files])

    @property
    def is_files(self) -> bool:
        return self.dataset is None

    def schema(self, paths: list[str] | None = None) -> StructType:
        if self.dataset is not None:
            return self.dataset.schema
        return file_schema(self.spark, paths or [f.path for f in self.files], self.fmt, self.text_column, self.base)

    def read(self, paths: list[str], data_schema: StructType) -> DataFrame:
        if self.dataset is not None:
            return dataset_rows(self.dataset, paths if self.by_file else None, self.file_column)
        return read_files(self.spark, paths, self.fmt, data_schema, self.text_column, self.base)
