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

import functools
import json
import logging
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jql import schema
from spark_jql.config import JobConfig
from spark_jql.errors import AccountingError, InputError, first_line, marked_line
from spark_jql.layout import OutputLayout
from spark_jql.paths import normalise
from spark_jql.scoring.identity import scorer_fingerprint
from spark_jql.spark import preflight
from spark_jql.spark.api import (
    BAD_EMBEDDING,
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
from spark_jql.spark.inputs import FILE
from spark_jql.spark.lease import OutputLease
from spark_jql.spark.session import is_connect
from spark_jql.spark.stage import UnitStage, run_stage
from spark_jql.spark.storage import exists, read_text, write_text
from spark_jql.spark.stored import check_embedding_input, check_first_values
from spark_jql.spark.units import UNIT_COLUMN
from spark_jql.thresholds import Thresholds

log = logging.getLogger(__name__)


class AnnotateStage(UnitStage):
    """Scores from the text (encoder + heads), or from stored embeddings by the heads alone (``columns.embedding``)."""

    name = "annotate"

    def __init__(self, cfg: JobConfig, thresholds_follow: bool = False, builds=None):
        self.cfg = cfg
        self.thresholds_follow = thresholds_follow
        self.builds = builds
        self.heads_only = cfg.columns.embedding is not None
        self.reads_text = not self.heads_only
        # heads-only rescoring reads a scored output: its score columns are recomputed, not clashes
        self.adds = [] if self.heads_only else schema.output_columns([h.name for h in cfg.scorer.heads])

    def check(self, spark, schema_, source) -> None:
        preflight.annotate(spark, self.cfg, schema_, self.thresholds_follow)
        if self.heads_only:  # the column against the heads, then its first values, on the driver
            first = source.read([source.files[0].path] if source.by_file else None, schema_)
            encoding, meta = check_embedding_input(first, self.cfg.scorer, self.cfg.columns.embedding,
                                                   self.cfg.columns.embedding_dtype)
            check_first_values(first, self.cfg.columns.embedding, encoding, meta["dim"], FILE)

    def fingerprint(self):
        cfg = self.cfg
        found = scorer_fingerprint(cfg.scorer, cfg.columns.text, with_encoder=not self.heads_only)
        if self.heads_only:
            found.settings["embedding_column"] = [cfg.columns.embedding, cfg.columns.embedding_dtype]
        return found

    def translate(self, err: Exception) -> Exception | None:
        """A stored embedding the heads cannot take, raised by the query: one line naming file, column and document."""
        line = marked_line(err, BAD_EMBEDDING) if self.heads_only else None
        if not line:
            return None
        file, rest = line.split(": ", 1)
        return InputError(f"bad stored embedding in {normalise(file) if file else 'the input'}: {rest}")

    def transform(self, rows, unit: int):
        cfg = self.cfg
        if self.heads_only:
            return score_embeddings(rows, cfg.scorer, cfg.columns.embedding, cfg.columns.embedding_dtype,
                                    cfg.spark.arrow_batch_size)
        return annotate(rows, cfg.scorer, cfg.columns.text, cfg.spark.arrow_batch_size, builds=self.builds)


def output_columns(df, chosen: list[str] | None, what: str):
    """filtered/dropped with ``io.output_columns`` only (dropped keeps its reason); scored and ``None``: all."""
    if chosen is None or what == "scored":
        return df
    missing = [c for c in chosen if c not in df.columns and c != schema.DROP_REASON]
    if missing:  # checked before annotate (preflight.output_columns); kept as the last guard
        raise InputError(f"io.output_columns names column(s) {missing} that {what} does not have; it has {df.columns}")
    keep = [c for c in chosen if what == "dropped" or c != schema.DROP_REASON]
    keep += [schema.DROP_REASON] if what == "dropped" and schema.DROP_REASON not in keep else []
    return df.select(*[quoted(c) for c in keep])


def _leased(stage: str):
    """Hold the output lease on ``io.output`` while a public stage runs (re-entrant: ``run`` calls the others)."""
    def wrap(method):
        @functools.wraps(method)
        def leased(self, *args, **kwargs):
            with OutputLease(self.spark, self.config.io.output, stage):
                return method(self, *args, **kwargs)
        return leased
    return wrap


class Job:
    def __init__(self, spark: SparkSession, config: JobConfig):
        self.spark = spark
        self.config = config
        self.paths = OutputLayout(config.io.output).job_paths()
        self.summary: dict = {}
        preflight.output_folder(spark, config.io.output)
        preflight.tables(spark, config)
        preflight.data_sources(spark, config)  # a missing Delta/Iceberg connector: one line before any work

    # -- stages -------------------------------------------------------------
    @_leased("annotate")
    def annotate(self, thresholds_follow: bool = False) -> dict:
        """Score every input row, unit by unit; a rerun over the same inputs and scorer skips finished units."""
        cfg = self.config
        start = time.perf_counter()
        # Scorer builds are a classic-only diagnostic (accumulators); counts come from the data.
        builds = None if is_connect(self.spark) else self.spark.sparkContext.accumulator(0)
        stage = AnnotateStage(cfg, thresholds_follow, builds)
        done = run_stage(self.spark, cfg, stage, self.paths["scored"], lambda: self.refuse_existing("annotate"),
                         lease=False)  # the job's own lease on io.output covers scored/
        run, written = done["summary"], done["frame"]
        scored_rows = run["rows"]
        written.drop(cfg.columns.text).write.mode("overwrite").parquet(self.paths["stats"])
        if cfg.io.output_tables.scored:
            self._write(written.drop(UNIT_COLUMN), "scored", partition=False)
        with_score = written.where(quoted(schema.AGGREGATE).isNotNull()).count()
        result = {
            **{k: run[k] for k in ("input", "input_version", "input_files", "input_files_added", "units", "units_resumed", "skipped_files",
                                   "skipped_records", "skipped_records_by_file", "input_rows")},
            "scored_rows": scored_rows,
            "rows_with_score": with_score,
            "rows_without_text": scored_rows - with_score,
            "scorer_builds": builds.value if builds is not None else None,
            "seconds": round(time.perf_counter() - start, 2),
            "scored_now": run["processed_now"],
            "scoring_seconds": run["work_seconds"],
            # scoring throughput: documents scored by this run / time of the actions that scored them (the
            # stage's other work -- listing, writing stats/ -- is in "seconds", not here)
            "docs_per_second": run["docs_per_second"],
            "heads_only": cfg.columns.embedding is not None,
        }
        log.info("annotate: %s", result)
        return self._record("annotate", result)

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
                self._refuse_output(what)

    def _refuse_output(self, what: str) -> None:
        """``io.mode=error``: one line if the table or folder ``what`` is written to already exists."""
        table = getattr(self.config.io.output_tables, what, None)
        if table is not None and self.spark.catalog.tableExists(table):
            raise InputError(f"table {table} (io.output_tables.{what}) already exists (io.mode=error); "
                             "drop it or set io.mode=overwrite")
        if what != "scored" and table is None and exists(self.spark, self.paths[what]):
            raise InputError(f"{self.paths[what]} already exists (io.mode=error); remove it or set io.mode=overwrite")

    def _write(self, df, what: str, partition: bool = True):
        """Write filtered/dropped (or a scored table): chosen columns, format, partitioning, file or table; read back."""
        io = self.config.io
        df = output_columns(df, io.output_columns, what)
        table = getattr(io.output_tables, what)
        if io.mode == "error":
            # Spark Connect on Databricks refuses the errorifexists save mode: check here, then write "overwrite"
            # (the output lease keeps other runs out between the check and the write).
            self._refuse_output(what)
        writer = df.write.mode("overwrite").format(io.output_format)
        if partition and io.partition_by_language:
            writer = writer.partitionBy(*self.config.columns.language)
        if table is not None:
            writer.saveAsTable(table)
            return self.spark.table(table)
        writer.save(self.paths[what])
        return self.spark.read.format(io.output_format).load(self.paths[what])

    @_leased("thresholds")
    def thresholds(self) -> Thresholds:
        cfg = self.config
        self.refuse_existing("thresholds")
        scored = preflight.scored(self.spark, self.paths["scored"], cfg)
        result = compute_thresholds(scored, cfg.thresholds, cfg.columns)
        written = write_text(self.spark, self.paths["thresholds"], result.to_json())
        log.info("thresholds: wrote %s", written)
        self._record(
            "thresholds",
            {
                "file": written,  # the file to open: a part file inside the folder where a client cannot rename it
                "languages": len(result.languages),
                "fallback_languages": sum(e.fallback for e in result.languages),
                "global_thresholds": result.global_thresholds,
                "documents": result.global_documents,
            },
        )
        return result

    @_leased("filter")
    def filter(self, thresholds: Thresholds | None = None) -> dict:
        cfg = self.config
        self.refuse_existing("filter")
        if thresholds is None:
            thresholds = preflight.thresholds_file(self.spark, self.paths["thresholds"], cfg)
        scored = preflight.scored(self.spark, self.paths["scored"], cfg)
        scored_columns = [c for c in scored.columns if c != UNIT_COLUMN]
        preflight.output_columns(cfg, preflight.filtered_columns(scored_columns, cfg), self.paths["scored"])
        preflight.partition_values(scored, cfg, self.paths["scored"])
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

    @_leased("run")
    def run(self) -> dict:
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
        except InputError:  # the first stage to finish here
            self.summary = {}
        except ValueError as err:  # cut short by a kill while writing it: this stage's result starts a new one
            log.warning("summary %s is truncated or unreadable (%s): written anew", self.paths["summary"], first_line(err)[:120])
            self.summary = {}
        if not isinstance(self.summary, dict):
            log.warning("summary %s does not hold a JSON object: written anew", self.paths["summary"])
            self.summary = {}
        self.summary[stage] = result
        written = write_text(self.spark, self.paths["summary"], json.dumps(self.summary, indent=2, default=str))
        log.info("%s: summary in %s", stage, written)
        return result
