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
from spark_jql.spark.progress import ScoringProgress
from spark_jql.spark.api import KEEP, UNKNOWN_LANGUAGE, annotate, compute_thresholds, language_key, mark_rows, quoted, split_marked
from spark_jql.spark.io import detect_format, find_bad_files, input_files, input_schema, join_path, read_files, read_text, write_text
from spark_jql.spark.units import UnitPlan
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
        """Score every input row, unit by unit; a rerun over the same inputs skips finished units."""
        cfg = self.config
        start = time.perf_counter()
        files = input_files(self.spark, cfg.io.input)
        fmt = detect_format(files) if cfg.io.input_format == "auto" else cfg.io.input_format
        schema_ = self._input_schema(files, fmt)  # one schema for every unit
        preflight.annotate(self.spark, cfg, schema_, thresholds_follow)
        plan = UnitPlan(self.spark, self.paths["scored"], files, cfg.io.files_per_unit)
        plan.prepare(resume=cfg.io.resume, mode=cfg.io.mode)
        self._scoring = {"rows": 0, "seconds": 0.0}  # the scoring actions alone, for docs/s
        sc = self.spark.sparkContext
        builds, docs = sc.accumulator(0), sc.accumulator(0)
        for unit in plan.pending():
            self._annotate_unit(plan, unit, fmt, schema_, builds, docs)
        markers = plan.markers()
        input_rows = sum(m["input_rows"] for m in markers)
        written = self.spark.read.parquet(self.paths["scored"])
        scored_rows = written.count()
        if scored_rows != input_rows:
            raise AccountingError(f"annotate read {input_rows} rows but {self.paths['scored']} holds {scored_rows}")
        written.drop(cfg.columns.text).write.mode("overwrite").parquet(self.paths["stats"])
        with_score = written.where(quoted(schema.AGGREGATE).isNotNull()).count()
        seconds = time.perf_counter() - start
        result = {
            "input": cfg.io.input,
            "input_files": len(files),
            "units": len(markers),
            "units_resumed": plan.resumed,
            "skipped_files": [f for m in markers for f in m["skipped_files"]],
            "input_rows": input_rows,
            "scored_rows": scored_rows,
            "rows_with_score": with_score,
            "rows_without_text": scored_rows - with_score,
            "scorer_builds": builds.value,
            "seconds": round(seconds, 2),
            "scored_now": self._scoring["rows"],
            "scoring_seconds": round(self._scoring["seconds"], 2),
            # scoring throughput: documents scored by this run / time of the actions that scored them (the
            # stage's other work -- listing, counting, writing stats/ -- is in "seconds", not here)
            "docs_per_second": (round(self._scoring["rows"] / self._scoring["seconds"], 2)
                                if self._scoring["seconds"] else None),
        }
        log.info("annotate: %s", result)
        return self._record("annotate", result)

    def _input_schema(self, files: list[str], fmt: str):
        """Schema of all inputs; with ``on_bad_file=skip`` unreadable files are left out of it."""
        try:
            return input_schema(self.spark, files, fmt)
        except Exception:
            bad = find_bad_files(self.spark, files, fmt, None, self.config.columns.text)
            if not bad:
                raise
            if self.config.io.on_bad_file == "fail":
                path, reason = bad[0]
                raise InputError(f"cannot read input file {path}: {reason} (set io.on_bad_file=skip to skip such files)") from None
            good = [f for f in files if f not in {p for p, _ in bad}]
            if not good:
                raise InputError(f"no readable input file among {len(files)}: {bad[:3]}") from None
            return input_schema(self.spark, good, fmt)

    def _annotate_unit(self, plan: "UnitPlan", unit: int, fmt: str, schema_, builds, docs) -> None:
        cfg = self.config
        files, skipped = plan.files(unit), []
        try:
            rows = self._score_files(plan.path(unit), files, fmt, schema_, builds, docs)
        except Exception as err:
            bad = find_bad_files(self.spark, files, fmt, schema_, cfg.columns.text)
            if not bad:
                raise
            if cfg.io.on_bad_file == "fail":
                path, reason = bad[0]
                raise InputError(
                    f"cannot read input file {path}: {reason} (set io.on_bad_file=skip to skip such files)"
                ) from err
            skipped = [{"file": p, "error": r} for p, r in bad]
            good = [f for f in files if f not in {p for p, _ in bad}]
            log.warning("skipping %d unreadable file(s): %s", len(bad), [p for p, _ in bad])
            rows = self._score_files(plan.path(unit), good, fmt, schema_, builds, docs) if good else 0
            if not good:
                self.spark.createDataFrame([], schema_).transform(
                    annotate, cfg.scorer, cfg.columns.text
                ).write.mode("overwrite").parquet(plan.path(unit))
        plan.commit(unit, {"input_rows": rows, "skipped_files": skipped})

    def _score_files(self, path: str, files: list[str], fmt: str, schema_, builds, docs) -> int:
        cfg = self.config
        source = read_files(self.spark, files, fmt, schema_)
        rows = source.count()
        scored = annotate(source, cfg.scorer, cfg.columns.text, cfg.spark.arrow_batch_size, builds=builds, docs=docs)
        start = time.perf_counter()
        with ScoringProgress(self.spark.sparkContext, total=rows, docs=docs, label=f"annotate {path.rsplit('/', 1)[-1]}"):
            scored.write.mode("overwrite").parquet(path)  # Spark's committer: all of it or nothing
        self._scoring["seconds"] += time.perf_counter() - start
        self._scoring["rows"] += rows
        written = self.spark.read.parquet(path).count()
        if written != rows:
            raise AccountingError(f"{path}: read {rows} rows but wrote {written}")
        return rows

    def thresholds(self) -> Thresholds:
        cfg = self.config
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
        cfg = self.config
        if thresholds is None:
            thresholds = preflight.thresholds_file(self.spark, self.paths["thresholds"], cfg)
        scored = preflight.scored(self.spark, self.paths["scored"], cfg)
        marked = mark_rows(scored, thresholds, cfg.filter.quantile, cfg.columns)
        kept, dropped = split_marked(marked, thresholds.score_column)
        kept.write.mode(cfg.io.mode).parquet(self.paths["filtered"])
        if cfg.filter.write_dropped:
            dropped.write.mode(cfg.io.mode).parquet(self.paths["dropped"])
        per_language, unknown_rows = self._retention(marked, thresholds)
        scored_rows = scored.count()  # parquet metadata: an independent count to check the others against
        kept_rows = self.spark.read.parquet(self.paths["filtered"]).count()
        dropped_source = self.spark.read.parquet(self.paths["dropped"]) if cfg.filter.write_dropped else dropped
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
