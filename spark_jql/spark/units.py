"""Units of work: groups of input files, each committed on its own so an interrupted run resumes.

``scored/`` holds one Spark-committed parquet directory per unit
(``scored/jql_unit=00003/``); a unit is finished when its marker
``scored/_jql_units/unit-00003.json`` exists (written after Spark's commit). A
manifest of the planned files ties the markers to the inputs: a rerun over the
same files skips finished units and redoes the rest; a rerun over different
files starts over (or stops, with ``io.mode=error``).
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import SparkSession

from spark_jql.errors import InputError
from spark_jql.spark.io import delete, exists, join_path, read_text, write_text

log = logging.getLogger(__name__)

UNIT_COLUMN = "jql_unit"


class UnitPlan:
    def __init__(self, spark: SparkSession, root: str, files: list[str], files_per_unit: int, buckets: int = 1,
                 extra: dict | None = None):
        self.spark = spark
        self.root = root
        groups = [files[i : i + files_per_unit] for i in range(0, len(files), files_per_unit)]
        self.buckets = buckets
        self.units = [group for group in groups for _ in range(buckets)]
        self.manifest = {"format": "spark_jql-units-v1", "files_per_unit": files_per_unit, "files": files}
        if buckets != 1 or extra:
            self.manifest.update({"buckets": buckets, **(extra or {})})
        self.meta = join_path(root, "_jql_units")
        self.resumed = 0

    def _marker(self, unit: int) -> str:
        return join_path(self.meta, f"unit-{unit:05d}.json")

    def path(self, unit: int) -> str:
        return join_path(self.root, f"{UNIT_COLUMN}={unit:05d}")

    def files(self, unit: int) -> list[str]:
        return self.units[unit]

    def bucket(self, unit: int) -> int:
        return unit % self.buckets

    def prepare(self, resume: bool, mode: str) -> None:
        """Keep a matching previous run's finished units; otherwise clear the output (or refuse)."""
        manifest_path = join_path(self.meta, "manifest.json")
        previous = None
        if exists(self.spark, manifest_path):
            try:
                previous = json.loads(read_text(self.spark, manifest_path))
            except ValueError:
                previous = None
        if resume and previous == self.manifest:
            return
        if exists(self.spark, self.root):
            if mode == "error":
                raise InputError(f"output {self.root} already exists (io.mode=error); remove it or set io.mode=overwrite")
            log.warning("clearing %s: it holds a run over other inputs%s", self.root, "" if resume else " (resume off)")
            delete(self.spark, self.root)
        write_text(self.spark, manifest_path, json.dumps(self.manifest, indent=1))

    def pending(self) -> list[int]:
        todo = [u for u in range(len(self.units)) if not exists(self.spark, self._marker(u))]
        self.resumed = len(self.units) - len(todo)
        if self.resumed:
            log.warning("resuming: %d of %d units already done", self.resumed, len(self.units))
        return todo

    def commit(self, unit: int, info: dict) -> None:
        write_text(self.spark, self._marker(unit), json.dumps({"unit": unit, "files": self.units[unit], **info}))

    def markers(self) -> list[dict]:
        return [json.loads(read_text(self.spark, self._marker(u))) for u in range(len(self.units))]
