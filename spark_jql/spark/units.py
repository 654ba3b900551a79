"""Units of work: groups of input files, each committed on its own so an interrupted run resumes.

``scored/`` holds one Spark-committed parquet directory per unit
(``scored/jql_unit=00003/``); a unit is finished when its marker
``scored/_jql_units/unit-00003.json`` exists (written after Spark's commit).

The manifest (``scored/_jql_units/manifest.json``) records what the units were made from: the
stage's fingerprint (every setting that decides the output and the content of every model file,
:mod:`spark_jql.fingerprint`) and each input file's size and modification time. A rerun resumes only when both still agree; otherwise it starts over
(``io.mode=overwrite``) or stops with a message saying what changed (``io.mode=error``), so
scores from two configurations or two versions of a file are never mixed. With
``io.incremental`` a rerun whose inputs are the previous files, unchanged, plus new ones keeps
the finished units and scores only the new files (data-lake ETL: new partitions arrive).
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import SparkSession

from spark_jql.errors import InputError, first_line
from spark_jql.fingerprint import Fingerprint
from spark_jql.spark.inputs import UNIT_COLUMN, InputFile
from spark_jql.spark.storage import (
    clear,
    exists,
    join_path,
    read_text,
    read_texts,
    write_text,
)

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "spark_jql-units-v3"
__all__ = ["UNIT_COLUMN", "UnitPlan", "group_files"]


def group_files(files: list[InputFile], unit_bytes: int, files_per_unit: int | None = None) -> list[list[InputFile]]:
    """Consecutive files in groups of ``files_per_unit``, or else of about ``unit_bytes`` bytes each."""
    if files_per_unit is not None:
        return [files[i : i + files_per_unit] for i in range(0, len(files), files_per_unit)]
    groups, current, size = [], [], 0
    for f in files:
        if current and size + (f.size or 0) > unit_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size or 0
    return groups + ([current] if current else [])


def _valid_units(units) -> bool:
    """A manifest's units: lists of ``{path, size, mtime}`` (what a resume compares and rebuilds)."""
    return isinstance(units, list) and all(
        isinstance(unit, list) and all(isinstance(f, dict) and isinstance(f.get("path"), str) and set(f) <= {"path", "size", "mtime"}
                                       for f in unit) for unit in units)


def _valid_marker(marker) -> bool:
    """A commit marker holds what the stage summary adds up (rows read, files and records skipped)."""
    return (isinstance(marker, dict) and isinstance(marker.get("input_rows"), int)
            and isinstance(marker.get("skipped_files"), list) and isinstance(marker.get("skipped_records", {}), dict))


class UnitPlan:
    """Units of input files (grouped by :func:`group_files`), each split into ``buckets`` units (rows by a hash).

    ``fingerprint`` is what decides the output (:mod:`spark_jql.fingerprint`): a previous run's units are
    kept only when it is the same."""

    def __init__(self, spark: SparkSession, root: str, files: list[InputFile], fingerprint: Fingerprint,
                 unit_bytes: int, files_per_unit: int | None = None, buckets: int = 1):
        self.spark = spark
        self.root = root
        self.unit_bytes = unit_bytes
        self.files_per_unit = files_per_unit
        self.buckets = buckets
        self.inputs = files
        self.fingerprint = fingerprint
        self.units: list[list[InputFile]] = self._chunk(files)
        self.meta = join_path(root, "_jql_units")
        self.manifest_path = join_path(self.meta, "manifest.json")
        self.resumed = 0
        self.added_files = 0

    def _chunk(self, files: list[InputFile]) -> list[list[InputFile]]:
        return [g for g in group_files(files, self.unit_bytes, self.files_per_unit) for _ in range(self.buckets)]

    def bucket(self, unit: int) -> int:
        return unit % self.buckets

    def _marker(self, unit: int) -> str:
        return join_path(self.meta, f"unit-{unit:05d}.json")

    def path(self, unit: int) -> str:
        return join_path(self.root, f"{UNIT_COLUMN}={unit:05d}")

    def files(self, unit: int) -> list[str]:
        return [f.path for f in self.units[unit]]

    def manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "fingerprint": self.fingerprint.as_dict(),
            "buckets": self.buckets,
            "units": [[f.as_dict() for f in unit] for unit in self.units],
        }

    def previous(self) -> tuple[dict | None, str]:
        """The previous run's manifest, or None and why it cannot be used (absent, truncated, another format)."""
        absent = "it holds no spark_jql manifest (another program's output, or an older version's)"
        if not exists(self.spark, self.manifest_path):
            return None, absent
        try:
            found = json.loads(read_text(self.spark, self.manifest_path))
        except (ValueError, InputError) as err:  # truncated (killed while writing), bad UTF-8, an empty folder
            return None, f"its manifest {self.manifest_path} is truncated or unreadable ({first_line(err)[:120]})"
        if not isinstance(found, dict) or found.get("format") != MANIFEST_FORMAT:
            return None, absent
        if not _valid_units(found.get("units")):
            return None, f"its manifest {self.manifest_path} has no valid list of units (edited or damaged)"
        return found, ""

    def prepare(self, resume: bool, mode: str, incremental: bool = False, before_writing=lambda: None,
                before_start_over=lambda why: None) -> None:
        """Keep a matching previous run's units (and add units for new files); otherwise start over or refuse.

        ``before_writing`` runs once the decision is made, before anything is written or deleted;
        ``before_start_over(why)`` runs first when an existing output cannot be resumed (it may refuse by raising)."""
        previous, why = self.previous()
        if previous is not None and not resume:
            why = "io.resume is off"
        elif previous is not None:
            why, added = self._difference(previous, incremental)
            if why is None:
                self.units = [[InputFile(**f) for f in unit] for unit in previous["units"]] + self._chunk(added)
                self.added_files = len(added)
                before_writing()
                if added:
                    log.warning("incremental: %d new input file(s) in %d new unit(s)", len(added), len(self._chunk(added)))
                    write_text(self.spark, self.manifest_path, json.dumps(self.manifest(), indent=1))
                return
        if exists(self.spark, self.root):
            before_start_over(why)
            if mode == "error":
                raise InputError(f"output {self.root} already exists and cannot be resumed: {why}; "
                                 "set io.mode=overwrite to start over")
            before_writing()
            log.warning("starting over in %s: %s", self.root, why)
            clear(self.spark, self.root)
        else:
            before_writing()
        write_text(self.spark, self.manifest_path, json.dumps(self.manifest(), indent=1))

    def _difference(self, previous: dict, incremental: bool) -> tuple[str | None, list[InputFile]]:
        """(why the previous run cannot be continued, or None; the input files it did not have)."""
        if previous.get("buckets", 1) != self.buckets:
            return f"the previous run split files into {previous.get('buckets')} buckets, this one into {self.buckets}", []
        changed = self.fingerprint.difference(previous.get("fingerprint"))
        if changed:
            return f"what decides the output differs from the previous run's: {changed}", []
        before = {f["path"]: f for unit in previous["units"] for f in unit}
        now = {f.path: f for f in self.inputs}
        changed = [p for p, f in now.items() if p in before and (f.size is None or (f.size, f.mtime) != (before[p]["size"], before[p]["mtime"]))]
        if changed:
            f, b = now[changed[0]], before[changed[0]]
            return (f"{len(changed)} input file(s) changed since the previous run, e.g. {changed[0]} "
                    f"(size {b['size']} -> {f.size}, modified {b['mtime']} -> {f.mtime})"), []
        removed = sorted(set(before) - set(now))
        if removed:
            return f"{len(removed)} input file(s) of the previous run are gone or not given, e.g. {removed[0]}", []
        added = [f for p, f in now.items() if p not in before]
        if added and not incremental:
            return f"{len(added)} new input file(s), e.g. {added[0].path} (io.incremental=true scores only those)", []
        return None, added

    def _done(self) -> dict[int, dict]:
        """Finished units' markers, read in one pass (one Spark read on remote storage)."""
        names = {f"unit-{u:05d}.json": u for u in range(len(self.units))}
        done = {}
        for name, text in read_texts(self.spark, self.meta).items():
            if name not in names:
                continue
            try:
                marker = json.loads(text)
            except ValueError:  # a marker cut short (killed while writing it): the unit is simply done again
                marker = None
            if not _valid_marker(marker):
                log.warning("commit marker %s is truncated or unreadable: unit %d will be scored again",
                            join_path(self.meta, name), names[name])
                continue
            done[names[name]] = marker
        return done

    def pending(self) -> list[int]:
        done = self._done()
        todo = [u for u in range(len(self.units)) if u not in done]
        self.resumed = len(self.units) - len(todo)
        if self.resumed:
            log.warning("resuming: %d of %d units already done", self.resumed, len(self.units))
        return todo

    def commit(self, unit: int, info: dict) -> None:
        write_text(self.spark, self._marker(unit), json.dumps({"unit": unit, "files": self.files(unit), **info}))

    def markers(self) -> list[dict]:
        done = self._done()
        missing = [u for u in range(len(self.units)) if u not in done]
        if missing:
            raise InputError(f"units {missing[:5]} of {self.root} have no commit marker")
        return [done[u] for u in range(len(self.units))]
