"""Data sources a session may lack: a table format comes from a package (connector) the session has or has not.

``io.input_format`` / ``io.output_format: delta`` (or iceberg, ...) without the connector would fail only
when Spark first resolves the format -- for the output, at the filter's write after all the scoring. The
preflight resolves each format once on the driver (schema analysis only, so Spark Connect too) and turns
Spark's ``DATA_SOURCE_NOT_FOUND`` into one line that keeps Spark's words and says what to install.
"""

from __future__ import annotations

import re

from pyspark.sql import SparkSession

from spark_jql.errors import InputError

# Formats every Spark has; anything else (delta, iceberg, avro, ...) comes from a package the session may lack.
BUILT_IN_FORMATS = ("parquet", "json", "orc", "csv", "text", "binaryfile")
_INSTALL = {
    "delta": "add the delta-spark package for this Spark (e.g. --packages io.delta:delta-spark_2.12:3.3.3 on Spark 3.5) "
             "with spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension; Databricks has it built in",
    "iceberg": "add the Iceberg runtime for this Spark (e.g. --packages org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.12.0) "
               "with its catalog settings; EMR enables it by configuration",
}
_NOT_FOUND = re.compile(r"\[DATA_SOURCE_NOT_FOUND\].*?(?=\s+(?:Please|Make sure|SQLSTATE)|$)|Failed to find data source: \S+")


def missing_source(err: BaseException, fmt: str, setting: str) -> InputError | None:
    """The one-line error when ``err`` is Spark saying it has no data source ``fmt`` (else None), keeping Spark's words."""
    found = _NOT_FOUND.search(str(err))
    if found is None:
        return None
    hint = _INSTALL.get(fmt, "check the name, or add the package that provides it (spark.jars / --packages)")
    return InputError(f"{setting} {fmt!r} is not a data source of this Spark session ({found.group(0).strip()}): {hint}")


def data_source(spark: SparkSession, fmt: str, setting: str, probe: str) -> None:
    """``fmt`` is a data source this session has: its reader resolves a path with no table (any error but
    DATA_SOURCE_NOT_FOUND means the source was found). Schema analysis only, so it works on Spark Connect."""
    if fmt in BUILT_IN_FORMATS:
        return
    try:
        spark.read.format(fmt).load(probe).schema
    except Exception as err:
        missing = missing_source(err, fmt, setting)
        if missing is not None:
            raise missing from None
