"""The spark-jql job: annotate -> thresholds -> filter, each stage reading the previous one's output.

Scores are computed once, in ``annotate``; ``thresholds`` and ``filter`` read the
scored parquet back. Every stage checks its row accounting (rows in = rows out,
kept + dropped = scored) and records counts in ``summary.json``.

Output layout under ``io.output``::

    scored/            parquet: every input column + score_<head>, jql_score, jql_tokens, jql_truncated
    stats/             parquet: the same without the text column
    thresholds.json    per-language quantile thresholds
    filtered/          parquet: kept documents (+ jql_threshold)
    dropped/           parquet: dropped documents (+ jql_threshold, jql_drop_reason)
    summary.json       counts, timings and per-language retention of the last run of each stage

``filtered``/``dropped`` may instead go to catalog tables (``io.output_tables``), in another format
(``io.output_format``), partitioned by language and with a chosen column set; the input may be a
catalog table (``io.input_table``). See spark/inputs.py for reading and spark/units.py for resume.
"""

from __future__ import annotations

import json
import logging
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jql import schema
from spark_jql.config import JobConfig
from spark_jql.errors import InputError
from spark_jql.spark import preflight
from spark_jql.spark.api import (
    KEEP,
    UNKNOWN_LANGUAGE,
    annotate,
    compute_thresholds,
    language_key,
    mark_rows,
    quoted,
    score_embeddings,
    split_marked,
)
from spark_jql.spark.inputs import (
    BAD,
    FILE,
    Source,
    check_reserved,
    find_bad_files,
    first_bad_line,
    normalise,
)
from spark_jql.spark.lease import OutputLease
from spark_jql.spark.progress import ScoringProgress
from spark_jql.spark.session import is_connect
from spark_jql.spark.storage import exists, join_path, read_text, write_text
from spark_jql.spark.units import UNIT_COLUMN, UnitPlan, scorer_hash
from spark_jql.thresholds import Thresholds

log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Row counts do not add up: a document would have been lost or duplicated."""


class Job:
    def __init__(self, spark: SparkSession, config: JobConfig):
        self.spark = spark
        self.config = config
        out = config.io.output
        self.paths = {
            "scored": join_path(out, "scored"),
            "stats": join_path(out, "stats"),
            "thresholds": join_path(out, "thresholds.json"),
            "filtered": join_path(out, "filtered"),
            "dropped": join_path(out, "dropped"),
            "summary": join_path(out, "summary.json"),
        }
        self.summary: dict = {}

    # -- stages -------------------------------------------------------------
    def annotate(self, thresholds_follow: bool = False) -> dict:
        """Score every input row, unit by unit; a rerun over the same inputs and scorer skips finished units."""
        with OutputLease(self.spark, self.config.io.output, "annotate"):
            cfg = self.config
            start = time.perf_counter()
            source = Source(self.spark, cfg.io, cfg.columns.text)
            schema_ = self._input_schema(source)  # one schema for every unit
            preflight.annotate(self.spark, cfg, schema_, thresholds_follow)
            plan = UnitPlan(self.spark, self.paths["scored"], source.files, cfg.io.files_per_unit,
                            scorer_hash(cfg.scorer, cfg.columns.text))
            plan.prepare(resume=cfg.io.resume, mode=cfg.io.mode, incremental=cfg.io.incremental,
                         before_writing=lambda: self.refuse_existing("annotate"))
            self._scoring = {"rows": 0, "seconds": 0.0}  # the scoring actions alone, for docs/s
            # Scorer builds are a classic-only diagnostic (accumulators); counts come from the data.
            builds = None if is_connect(self.spark) else self.spark.sparkContext.accumulator(0)
            for unit in plan.pending():
                self._annotate_unit(plan, unit, source, schema_, builds)
            markers = plan.markers()
            input_rows = sum(m["input_rows"] for m in markers)
            written = self._scored()
            scored_rows = written.count()
            if scored_rows != input_rows:
                raise AccountingError(f"annotate read {input_rows} rows but {self.paths['scored']} holds {scored_rows}")
            written.drop(cfg.columns.text).write.mode("overwrite").parquet(self.paths["stats"])
            if cfg.io.output_tables.scored:
                self._write(written.drop(UNIT_COLUMN), "scored", partition=False)
            with_score = written.where(quoted(schema.AGGREGATE).isNotNull()).count()
            skipped_records = {f: n for m in markers for f, n in m.get("skipped_records", {}).items()}
            seconds = time.perf_counter() - start
            result = {
                "input": cfg.io.input_table or cfg.io.input,
                "input_files": len(source.files),
                "input_files_added": plan.added_files,
                "units": len(markers),
                "units_resumed": plan.resumed,
                "skipped_files": [f for m in markers for f in m["skipped_files"]],
                "skipped_records": sum(skipped_records.values()),
                "skipped_records_by_file": skipped_records,
                "input_rows": input_rows,
                "scored_rows": scored_rows,
                "rows_with_score": with_score,
                "rows_without_text": scored_rows - with_score,
                "scorer_builds": builds.value if builds is not None else None,
                "seconds": round(seconds, 2),
                "scored_now": self._scoring["rows"],
                "scoring_seconds": round(self._scoring["seconds"], 2),
                # scoring throughput: documents scored by this run / time of the actions that scored them (the
                # stage's other work -- listing, counting, writing stats/ -- is in "seconds", not here)
                "docs_per_second": (round(self._scoring["rows"] / self._scoring["seconds"], 2)
                                    if self._scoring["seconds"] else None),
                "heads_only": cfg.columns.embedding is not None,
            }
            log.info("annotate: %s", result)
            return self._record("annotate", result)

    def _input_schema(self, source: Source):
        """Schema of all inputs, checked for reserved names; with ``on_bad_file=skip`` unreadable files are left out."""
        cfg = self.config
        if not source.is_files:
            found = source.schema()
        else:
            paths = [f.path for f in source.files]
            try:
                found = source.schema(paths)
            except Exception:
                bad = find_bad_files(self.spark, paths, source.fmt, None, cfg.columns.text)
                if not bad:
                    raise
                self._refuse_bad_files(bad)
                good = [f for f in paths if f not in {p for p, _ in bad}]
                if not good:
                    raise InputError(f"no readable input file among {len(paths)}: {bad[:3]}") from None
                found = source.schema(good)
        # heads-only rescoring reads a scored output: its score columns are recomputed (score_embeddings), not clashes
        added = [] if cfg.columns.embedding is not None else schema.output_columns([h.name for h in cfg.scorer.heads])
        check_reserved(found.names, added, f"the input ({source.label})")
        return found

    def _refuse_bad_files(self, bad: list[tuple[str, str]]) -> None:
        """``io.on_bad_file=fail``: stop naming the first unreadable file; with ``skip`` the caller leaves them out."""
        if self.config.io.on_bad_file == "fail":
            path, reason = bad[0]
            raise InputError(f"cannot read input file {path}: {reason} (set io.on_bad_file=skip to skip such files)")

    def _annotate_unit(self, plan: UnitPlan, unit: int, source: Source, schema_, builds) -> None:
        cfg = self.config
        files, skipped = plan.files(unit), []
        try:
            rows, skipped_records = self._score_files(plan.path(unit), source, files, schema_, builds)
        except (InputError, AccountingError):
            raise
        except Exception:  # a file Spark cannot read through: find which, probing every column
            bad = find_bad_files(self.spark, files, source.fmt, schema_, cfg.columns.text) if source.is_files else []
            if not bad:
                raise
            self._refuse_bad_files(bad)
            skipped = [{"file": p, "error": r} for p, r in bad]
            files = [f for f in files if f not in {p for p, _ in bad}]
            log.warning("skipping %d unreadable file(s): %s", len(bad), [p for p, _ in bad])
            rows, skipped_records = self._score_files(plan.path(unit), source, files, schema_, builds)
        plan.commit(unit, {"input_rows": rows, "skipped_files": skipped, "skipped_records": skipped_records})

    def _scores(self, source, builds=None):
        """The scored frame: from the text (encoder + heads), or heads only from ``columns.embedding``."""
        cfg = self.config
        if cfg.columns.embedding is not None:
            return score_embeddings(source, cfg.scorer, cfg.columns.embedding, cfg.columns.embedding_dtype)
        return annotate(source, cfg.scorer, cfg.columns.text, cfg.spark.arrow_batch_size, builds=builds)

    def _score_files(self, path: str, source: Source, files: list[str], schema_, builds) -> tuple[int, dict]:
        """Count, check and score ``files`` into the unit's directory: (rows scored, {file: bad records skipped})."""
        cfg = self.config
        if not files:
            self._scores(self.spark.createDataFrame([], schema_)).write.mode("overwrite").parquet(path)
            return 0, {}
        counts = self._file_counts(source.read(files, schema_))
        skipped_records = self._bad_records(source, counts, schema_)
        if cfg.columns.embedding is None:
            self._check_text_column(source, counts)
        rows = sum(c["rows"] - c["bad"] for c in counts.values())
        good = source.read(files, schema_).where(F.col(BAD).isNull()).drop(FILE, BAD)
        scored = self._scores(good, builds)
        start = time.perf_counter()
        with ScoringProgress(self.spark, total=rows, label=f"annotate {path.rsplit('/', 1)[-1]}"):
            scored.write.mode("overwrite").parquet(path)  # Spark's committer: all of it or nothing
        self._scoring["seconds"] += time.perf_counter() - start
        self._scoring["rows"] += rows
        written = self.spark.read.parquet(path).count()
        if written != rows:
            raise AccountingError(f"{path}: read {rows} rows but wrote {written}")
        return rows, skipped_records

    def _file_counts(self, rows) -> dict:
        """Per file: rows, bad records, rows with a text value (one pass)."""
        text = quoted(self.config.columns.text) if self.config.columns.text in rows.columns else F.lit(None)
        found = rows.groupBy(FILE).agg(
            F.count(F.lit(1)).alias("rows"), F.count(F.col(BAD)).alias("bad"), F.count(text).alias("text")
        ).collect()
        return {r[FILE]: {"rows": r["rows"], "bad": r["bad"], "text": r["text"]} for r in found}

    def _bad_records(self, source: Source, counts: dict, schema_) -> dict:
        """Fail naming the first bad record's file and line, or return {file: bad records skipped}."""
        bad = {normalise(f): c["bad"] for f, c in counts.items() if c["bad"]}
        if not bad:
            return {}
        if self.config.io.on_bad_file == "skip":
            log.warning("skipping %d bad record(s) in %d file(s)", sum(bad.values()), len(bad))
            return bad
        path = min(bad)
        found = first_bad_line(self.spark, path, schema_, self.config.columns.text)
        where = f"line {found[0]}: {found[1]}: {found[2]!r}" if found else "bad records"
        raise InputError(
            f"{path}: {where} ({bad[path]} bad record(s) in this file; set io.on_bad_file=skip to skip and count them)"
        )

    def _check_text_column(self, source: Source, counts: dict) -> None:
        """A parquet file without a single text value may lack the column (merged schemas make it null): name it."""
        if source.fmt != "parquet":
            return
        text = self.config.columns.text
        for f, c in counts.items():
            if c["rows"] and not c["text"] and text not in self.spark.read.parquet(f).columns:
                raise InputError(f"input file {normalise(f)} has no column {text!r} (columns.text); every input file needs it")

    def _scored(self):
        """The scored rows of every unit (schemas merged: an incremental unit may bring a new column)."""
        return self.spark.read.option("mergeSchema", "true").parquet(self.paths["scored"])

    def refuse_existing(self, *stages: str) -> None:
        """``io.mode=error``: stop before any work if an output these stages write already exists."""
        io = self.config.io
        if io.mode != "error":
            return
        outputs = {"annotate": ["stats", "scored"], "thresholds": ["thresholds"], "filter": ["filtered", "dropped"]}
        for stage in stages:
            for what in outputs[stage]:
                if what == "dropped" and not self.config.filter.write_dropped:
                    continue
                table = getattr(io.output_tables, what, None)
                if table is not None and self.spark.catalog.tableExists(table):
                    raise InputError(f"table {table} (io.output_tables.{what}) already exists (io.mode=error); "
                                     "drop it or set io.mode=overwrite")
                if what != "scored" and table is None and exists(self.spark, self.paths[what]):
                    raise InputError(f"{self.paths[what]} already exists (io.mode=error); remove it or set io.mode=overwrite")

    def _write(self, df, what: str, partition: bool = True):
        """Write filtered/dropped (or a scored table): chosen columns, format, partitioning, file or table; read back."""
        io = self.config.io
        if io.output_columns is not None and what != "scored":
            missing = [c for c in io.output_columns if c not in df.columns]
            if missing:
                raise InputError(f"io.output_columns names column(s) {missing} that {what} does not have; it has {df.columns}")
            keep = io.output_columns + ([schema.DROP_REASON] if what == "dropped" and schema.DROP_REASON not in io.output_columns else [])
            df = df.select(*[quoted(c) for c in keep])
        writer = df.write.mode("overwrite" if io.mode == "overwrite" else "errorifexists").format(io.output_format)
        if partition and io.partition_by_language:
            writer = writer.partitionBy(*self.config.columns.language)
        table = getattr(io.output_tables, what)
        if table is not None:
            writer.saveAsTable(table)
            return self.spark.table(table)
        writer.save(self.paths[what])
        return self.spark.read.format(io.output_format).load(self.paths[what])

    def thresholds(self) -> Thresholds:
        with OutputLease(self.spark, self.config.io.output, "thresholds"):
            cfg = self.config
            self.refuse_existing("thresholds")
            scored = preflight.scored(self.spark, self.paths["scored"], cfg)
            result = compute_thresholds(scored, cfg.thresholds, cfg.columns)
            write_text(self.spark, self.paths["thresholds"], result.to_json())
            self._record(
                "thresholds",
                {
                    "languages": len(result.languages),
                    "fallback_languages": sum(e.fallback for e in result.languages),
                    "global_thresholds": result.global_thresholds,
                    "documents": result.global_documents,
                },
            )
            return result

    def filter(self, thresholds: Thresholds | None = None) -> dict:
        with OutputLease(self.spark, self.config.io.output, "filter"):
            cfg = self.config
            self.refuse_existing("filter")
            if thresholds is None:
                thresholds = preflight.thresholds_file(self.spark, self.paths["thresholds"], cfg)
            scored = preflight.scored(self.spark, self.paths["scored"], cfg)
            marked = mark_rows(scored, thresholds, cfg.filter.quantile, cfg.columns)
            kept, dropped = split_marked(marked.drop(UNIT_COLUMN), thresholds.score_column)
            kept_written = self._write(kept, "filtered")
            dropped_source = self._write(dropped, "dropped") if cfg.filter.write_dropped else dropped
            per_language, unknown_rows = self._retention(marked, thresholds)
            scored_rows = scored.count()  # parquet metadata: an independent count to check the others against
            kept_rows = kept_written.count()
            by_reason = {r[schema.DROP_REASON]: r["count"] for r in dropped_source.groupBy(schema.DROP_REASON).count().collect()}
            dropped_rows = sum(by_reason.values())
            marked_rows = sum(r["documents"] for r in per_language)
            if kept_rows + dropped_rows != scored_rows or marked_rows != scored_rows:
                raise AccountingError(
                    f"filter: kept {kept_rows} + dropped {dropped_rows} (thresholded {marked_rows}) != scored {scored_rows}"
                )
            result = {
                "quantile": cfg.filter.quantile,
                "scored_rows": scored_rows,
                "kept_rows": kept_rows,
                "dropped_rows": dropped_rows,
                "dropped_by_reason": by_reason,
                "rows_with_unknown_language": unknown_rows,
                "per_language": per_language,
            }
            log.info("filter: kept %d of %d (%s)", kept_rows, scored_rows, by_reason)
            return self._record("filter", result)

    def run(self) -> dict:
        with OutputLease(self.spark, self.config.io.output, "run"):
            self.refuse_existing("annotate", "thresholds", "filter")  # before anything is written
            self.annotate(thresholds_follow=True)
            self.filter(self.thresholds())
            return self.summary

    # -- helpers ------------------------------------------------------------
    def _retention(self, marked, thresholds: Thresholds) -> tuple[list[dict], int]:
        """Documents and tokens, all and kept, per language (one pass); and rows of unknown language."""
        names = thresholds.language_columns
        lang = [expr.alias(name) for name, expr in language_key(marked, self.config.columns)]
        keep = F.col(KEEP)
        rows = marked.groupBy(*lang).agg(
            F.count(F.lit(1)).alias("docs"),
            F.sum(schema.TOKENS).alias("tokens"),
            F.sum(keep.cast("long")).alias("kept_docs"),
            F.sum(F.when(keep, F.col(schema.TOKENS))).alias("kept_tokens"),
            F.sum(F.col(UNKNOWN_LANGUAGE).cast("long")).alias("unknown"),
        ).collect()
        per_language = []
        for r in sorted(rows, key=lambda r: [str(r[n]) for n in names]):
            tokens, kept_tokens = int(r["tokens"] or 0), int(r["kept_tokens"] or 0)
            per_language.append(
                {
                    **{n: r[n] for n in names},
                    "documents": r["docs"],
                    "kept_documents": int(r["kept_docs"]),
                    "tokens": tokens,
                    "kept_tokens": kept_tokens,
                    "token_retention": round(kept_tokens / tokens, 4) if tokens else None,
                }
            )
        return per_language, sum(int(r["unknown"]) for r in rows)

    def _record(self, stage: str, result: dict) -> dict:
        try:
            self.summary = json.loads(read_text(self.spark, self.paths["summary"]))
        except (InputError, ValueError):
            self.summary = {}
        self.summary[stage] = result
        write_text(self.spark, self.paths["summary"], json.dumps(self.summary, indent=2, default=str))
        return result
