"""Finding input files on any filesystem Spark can reach, on classic and Spark Connect sessions.

A glob (local disk, S3, ABFS, DBFS, HDFS...) is listed once, with each file's size and
modification time (what units are made of and what resume compares): local paths by Python,
others by one Spark ``binaryFile`` listing (no JVM gateway, no file content read). Which route a
path takes is spark/storage.py's :func:`is_local`; reading the inputs is spark/inputs.py. Small
text artifacts live in spark/storage.py; their names stay importable from here.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pyspark.sql import SparkSession

from spark_jql import paths
from spark_jql.spark.storage import clear as delete  # noqa: F401
from spark_jql.spark.storage import exists, is_local, join_path, path_not_found, read_text, write_text  # noqa: F401


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int | None = None
    mtime: float | None = None  # seconds since the epoch

    def as_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "mtime": self.mtime}


def list_files(spark: SparkSession, pattern: str) -> list[InputFile]:
    """Files matching a path or glob (a folder gives the data files under it), normalised and sorted; ``[]`` if none."""
    if is_local(spark, pattern):
        found = [str(f) for match in glob.glob(paths.local_path(pattern)) for f in _data_files(Path(match))]
        return sorted((_stat(paths.normalise(f)) for f in dict.fromkeys(found)), key=lambda f: f.path)
    try:  # binaryFile reads no content unless the content column is selected
        frame = spark.read.format("binaryFile").load(pattern)
        rows = frame.select("path", "length", "modificationTime").collect()
    except Exception as err:
        if path_not_found(err):
            return []
        raise
    listed = {paths.normalise(unquote(r["path"])): InputFile(paths.normalise(unquote(r["path"])), int(r["length"]),
                                                             r["modificationTime"].timestamp()) for r in rows}
    # Spark's scans skip empty files; its listing has them (no rows to read, but a file of the input all the same).
    for name in frame.inputFiles():
        listed.setdefault(paths.normalise(unquote(name)), InputFile(paths.normalise(unquote(name)), 0, None))
    return sorted(listed.values(), key=lambda f: f.path)


def _data_files(match: Path) -> list[Path]:
    """A file itself; a folder's files at any depth, skipping ``_``/``.`` names as Spark does."""
    if not match.is_dir():
        return [match]
    return sorted(f for f in match.rglob("*")
                  if f.is_file() and not any(p.startswith((".", "_")) for p in f.relative_to(match).parts))


def _stat(path: str) -> InputFile:
    st = os.stat(path)
    return InputFile(path, st.st_size, st.st_mtime)
