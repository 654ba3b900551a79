"""Input globs on any filesystem Spark can reach, on classic and Spark Connect sessions.

Input globs (local disk, S3, ABFS, DBFS, HDFS...) are expanded here so that a pattern
matching nothing is a clear error rather than an empty job: local paths by Python, others
by Spark's own file listing (:func:`spark_jql.spark.storage.list_files`, no JVM gateway);
reading the inputs is spark/inputs.py. Small text artifacts live in spark/storage.py; their
names stay importable from here.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jql.spark.storage import clear as delete  # noqa: F401
from spark_jql.spark.storage import exists, join_path, list_files, read_text, write_text  # noqa: F401


def expand(spark: SparkSession, pattern: str) -> list[str]:
    """Files (local: or directories) matching ``pattern``; empty list when nothing matches."""
    return list_files(spark, pattern)
