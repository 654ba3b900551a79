"""LLM annotation as a DataFrame transformation: one set of result columns per judge.

Each judge adds ``judge_<name>`` (int 0-5, a double when the parser keeps decimals; null when there is no score),
``judge_<name>_raw`` (the answer), ``judge_<name>_error`` (null, or why there is no
score), ``judge_<name>_attempts``, and provenance: ``judge_<name>_model``
(``model @ the endpoint that answered``) and ``judge_<name>_prompt`` (prompt name and sha256); the run's
summary names the preset and its source. Failures
are rows, not task failures, so one bad document or a server hiccup never fails the
job; a judge that fails on more than ``max_failure_rate`` of its requests does.

Concurrency: one pandas UDF asks every judge at once, each judge through its own
pool of ``concurrency`` (or the judge's own ``concurrency``) requests per task, so a
server sees at most ``concurrency x running tasks``; bound the tasks with
``repartition(n)`` or the executor count.

``retry_failed=True`` takes a judged output back in: rows whose judge error is set
(other than ``no_text``) are asked again, every other row keeps its answer; judges
the input has no columns for are asked for every row.

The ``judge`` stage (``write_judgements``) works in committed units of about
``rows_per_unit`` rows (file groups split by a hash of the text): a rerun skips
finished units, so an interrupted run loses at most the units in flight. Labels are
never deleted unless asked (``overwrite_labels``, ``--overwrite-labels``): a rerun with
another judge configuration (model, prompt, parser, ...) or other inputs is refused
naming what changed, whatever ``io.mode`` says; endpoint addresses, concurrency and
retries are how a run goes, not what it writes, so changing them resumes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from spark_jql.config import JudgeConfig
from spark_jql.errors import InputError
from spark_jql.judge_presets import PRESETS
from spark_jql.layout import JUDGED, OutputLayout
from spark_jql.method.judge import (
    NO_TEXT,
    JudgeFailureError,
    JudgePanel,
    PromptSet,
    check_judges,
    judge_columns,
    preflight,
)
from spark_jql.paths import is_inside
from spark_jql.spark.api import quoted, require_text_column
from spark_jql.spark.stage import UnitStage
from spark_jql.spark.udf import rebatch

FIELDS = {"score": IntegerType(), "raw": StringType(), "error": StringType(), "attempts": IntegerType(), "prompt": StringType(),
          "endpoint": StringType()}


def fields(config: JudgeConfig) -> dict:
    """The UDF's fields per judge: the score is a double when the parser keeps decimals (ml-filter), else an int."""
    return {**FIELDS, "score": DoubleType() if config.parser().decimals == "keep" else IntegerType()}


def make_panel_udf(config: JudgeConfig, prompts: dict[str, PromptSet], keys: dict[str, str | None],
                   batch_size: int | None = None):
    """A pandas UDF ``struct<lang, t0, t1, ...> -> struct<j0__score, ...>``: text ``t<i>`` for judge i (null: not asked)."""
    names = [j.name for j in config.judges]
    schema = StructType([StructField(f"j{i}__{f}", t) for i in range(len(names)) for f, t in fields(config).items()])
    score_dtype = "Float64" if config.parser().decimals == "keep" else "Int32"

    @pandas_udf(schema)
    def judge_udf(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        with JudgePanel(config, prompts, keys) as panel:
            for batch in rebatch(batches, batch_size):
                results = panel.judge({n: batch[f"t{i}"].tolist() for i, n in enumerate(names)}, batch["lang"].tolist())
                out = {}
                for i, n in enumerate(names):
                    rs = results[n]
                    out[f"j{i}__score"] = pd.array([r.score for r in rs], dtype=score_dtype)
                    out[f"j{i}__raw"] = [r.raw for r in rs]
                    out[f"j{i}__error"] = [r.error for r in rs]
                    out[f"j{i}__attempts"] = pd.array([r.attempts for r in rs], dtype="Int32")
                    out[f"j{i}__prompt"] = [r.prompt for r in rs]
                    out[f"j{i}__endpoint"] = [r.endpoint for r in rs]
                yield pd.DataFrame(out)

    return judge_udf


def _language_column(df: DataFrame, config: JudgeConfig, default: str | None) -> str | None:
    per_language = bool(config.prompt_files) or any(j.prompt_files for j in config.judges)
    column = config.language_column or default
    if config.language_column and config.language_column not in df.columns:
        raise InputError(f"language_column {config.language_column!r} not found; the input has columns {df.columns}")
    if per_language and (column is None or column not in df.columns):
        raise InputError(
            f"prompt_files are set per language but the language column {column!r} is not in the input "
            f"(columns {df.columns}); set language_column"
        )
    return column if column in df.columns else None


def judge(
    df: DataFrame,
    config: JudgeConfig,
    text_column: str = "text",
    arrow_batch_size: int | None = None,
    retry_failed: bool = False,
    language_column: str | None = None,
    checked: tuple[dict, dict] | None = None,
) -> DataFrame:
    """Keep every input column and row; add (or, with ``retry_failed``, refresh) the result columns of every judge."""
    require_text_column(df, text_column)
    prompts, keys = checked or check_judges(config)  # prompt files are read on the driver: executors need not see them
    lang = _language_column(df, config, language_column)
    present = {}
    for e in config.judges:
        cols = judge_columns(e.name)
        found = [c for c in cols.values() if c in df.columns]
        if found and not retry_failed:
            raise InputError(f"input already has judge column(s) {found}; drop or rename them, or use retry_failed "
                             f"(--retry-failed) to re-ask only the rows whose label failed")
        present[e.name] = bool(found)
        core = [cols[f] for f in ("score", "raw", "error", "attempts")]
        if found and any(c not in df.columns for c in core):
            raise InputError(f"judge {e.name!r}: input has only some of its columns {found}; expected at least {core}")
    text = quoted(text_column)
    redo = {}
    for e in config.judges:
        if present[e.name]:
            error = quoted(judge_columns(e.name)["error"])
            redo[e.name] = error.isNotNull() & (error != F.lit(NO_TEXT))
    asks = [(F.when(redo[e.name], text) if e.name in redo else text).alias(f"t{i}") for i, e in enumerate(config.judges)]
    language = (quoted(lang).cast("string") if lang else F.lit(None).cast("string")).alias("lang")
    tmp = "__jql_judges"
    wide = df.select("*", make_panel_udf(config, prompts, keys, arrow_batch_size)(F.struct(language, *asks)).alias(tmp))

    def new(i: int, e, field: str):
        if field == "model":  # the model and the replica that answered (no request: the model alone)
            endpoint = F.col(tmp).getField(f"j{i}__endpoint")
            return F.when(endpoint.isNull(), F.lit(e.model)).otherwise(F.concat(F.lit(f"{e.model} @ "), endpoint))
        return F.col(tmp).getField(f"j{i}__{field}")

    replaced, added = {}, []
    for i, e in enumerate(config.judges):
        for field, column in judge_columns(e.name).items():
            value = new(i, e, field)
            if e.name in redo:
                old = quoted(column) if column in df.columns else F.lit(None).cast(fields(config).get(field, StringType()))
                value = F.when(redo[e.name], value).otherwise(old)
                if column in df.columns:
                    replaced[column] = value.alias(column)
                    continue
            added.append(value.alias(column))
    return wide.select(*[replaced.get(c, quoted(c)) for c in df.columns], *added)


def failure_stats(written: DataFrame, config: JudgeConfig) -> tuple[dict[str, dict], int]:
    """Per judge: requests made (attempts > 0) and those without a score; and the row count (one pass)."""
    aggs = [F.count(F.lit(1)).alias("__rows")]
    for e in config.judges:
        cols = judge_columns(e.name)
        asked = F.col(cols["attempts"]) > 0
        aggs += [F.sum(asked.cast("long")).alias(f"{e.name}__asked"),
                 F.sum((asked & F.col(cols["error"]).isNotNull()).cast("long")).alias(f"{e.name}__failed")]
    row = written.agg(*aggs).collect()[0]
    stats = {e.name: {"asked": int(row[f"{e.name}__asked"] or 0), "failed": int(row[f"{e.name}__failed"] or 0)}
             for e in config.judges}
    return stats, int(row["__rows"])


def _too_many_failures(stats: dict[str, dict], config: JudgeConfig) -> str | None:
    for e in config.judges:
        s = stats[e.name]
        if s["asked"] >= config.min_requests and s["failed"] > config.max_failure_rate * s["asked"]:
            return (f"judge {e.name!r} ({e.model} at {e.where}): {s['failed']} of {s['asked']} requests failed, more "
                    f"than max_failure_rate={config.max_failure_rate}")
    return None


def _judge_failure(err: Exception) -> JudgeFailureError | None:
    """The JudgeFailureError a Python worker raised, out of Spark's wrapped task failure."""
    found = re.search(r"JudgeFailureError: ([^\n]+)", str(err))
    return JudgeFailureError(found.group(1)) if found else None


class JudgeStage(UnitStage):
    """``judge`` on the stage skeleton: units of about ``rows_per_unit`` rows, every judge asked per row."""

    name = "judge"

    def __init__(self, cfg, judge_cfg: JudgeConfig, output: str, checked, partitions: int | None, retry_failed: bool,
                 overwrite_labels: bool = False):
        self.cfg, self.judge_cfg, self.output, self.checked = cfg, judge_cfg, output, checked
        self.partitions, self.retry_failed, self.overwrite_labels = partitions, retry_failed, overwrite_labels
        self.language = cfg.columns.language[0] if cfg.columns.language else None
        self.rows = 0
        self.bucket_count = 1

    def check(self, spark, schema, source) -> None:
        from spark_jql.spark import preflight as stage_checks

        if source.is_files and any(is_inside(f.path, self.output) for f in source.files):
            raise InputError(f"the output {self.output} is also the input; write a retried run to a new --output")
        stage_checks.text_stage(self.cfg, self.output, schema)
        # the columns a judged input must (or must not) have, on an empty frame: before any request
        judge(spark.createDataFrame([], schema), self.judge_cfg, self.cfg.columns.text, None, self.retry_failed,
              self.language, self.checked)

    def buckets(self, spark, source, schema, groups: int) -> int:
        self.rows = source.read([f.path for f in source.files], schema).count()
        self.bucket_count = max(1, math.ceil(self.rows / groups / self.judge_cfg.rows_per_unit))
        return self.bucket_count

    def fingerprint(self):
        from spark_jql.fingerprint import Fingerprint, decisive

        # every judge setting not marked runtime (model, prompts, temperature, max_tokens, max_chars,
        # score_pattern, decimal_scores, ...), the prompts' contents (their labels carry sha256), the text column
        settings = {"judge": decisive(self.judge_cfg), "retry_failed": self.retry_failed,
                    "text": self.cfg.columns.text}
        prompts = {f"prompt/{e.name}/{lang or 'default'}": p.label for e in self.judge_cfg.judges
                   for lang, p in [(None, self.checked[0][e.name].default), *sorted(self.checked[0][e.name].by_language.items())]}
        for e in self.judge_cfg.judges:  # the preset's per-language prompts come from one template: its digest
            if self.checked[0][e.name].preset:
                prompts[f"prompt/{e.name}/preset-languages"] = self.checked[0][e.name].for_language("de").label
        return Fingerprint(settings, prompts)

    def transform(self, rows, unit: int):
        from spark_jql.spark.units import UNIT_COLUMN

        rows = rows.drop(UNIT_COLUMN) if UNIT_COLUMN in rows.columns else rows  # (the runner keeps only this unit's bucket)
        if self.partitions:
            rows = rows.repartition(self.partitions)
        return judge(rows, self.judge_cfg, self.cfg.columns.text, self.cfg.spark.arrow_batch_size, self.retry_failed,
                     self.language, self.checked)

    def after_unit(self, spark, path: str, unit: int) -> dict:
        stats, _ = failure_stats(spark.read.parquet(path), self.judge_cfg)
        problem = _too_many_failures(stats, self.judge_cfg)
        if problem:  # not committed: a rerun asks this unit again
            raise JudgeFailureError(f"{problem} in unit {unit}; fix the server and rerun (finished units are kept)")
        return {"judges": stats}

    def translate(self, err: Exception):
        return _judge_failure(err)

    def before_start_over(self, output: str, why: str) -> None:
        """Labels cost server hours: never deleted (whatever io.mode says) unless ``--overwrite-labels`` asks."""
        if not self.overwrite_labels:
            raise InputError(
                f"{output} holds judge labels this run cannot continue: {why}. Nothing was deleted: write the new labels "
                "beside them with --output <another directory>, go back to the previous judge settings to resume, or "
                "pass --overwrite-labels to delete them and start over")


def write_judgements(cfg, judge_cfg: JudgeConfig, output: str | None = None, partitions: int | None = None,
                     retry_failed: bool = False, overwrite_labels: bool = False) -> dict:
    """The ``judge`` stage: read io.input, judge it unit by unit (resumable, units overlapping), check counts, summarise."""
    from spark_jql.spark.session import session_for
    from spark_jql.spark.stage import run_stage

    checked = check_judges(judge_cfg)  # keys and prompt files: before Spark starts
    flight = preflight(judge_cfg, *checked) if judge_cfg.preflight else {}  # every endpoint answers, in seconds
    spark = session_for(cfg)
    out = output or OutputLayout(cfg.io.output).path(JUDGED)
    done = run_stage(spark, cfg, JudgeStage(cfg, judge_cfg, out, checked, partitions, retry_failed, overwrite_labels), out)
    written = done["frame"]
    summary = {**done["summary"], "retry_failed": retry_failed, "preflight": flight, "judges": {}}
    for e in judge_cfg.judges:
        cols = judge_columns(e.name)
        kind = F.substring_index(cols["error"], ":", 1).alias("error")
        counts = written.groupBy(F.col(cols["score"]).alias("score"), kind).count().collect()
        scores, errors = {}, {}
        for r in counts:
            scores[str(r["score"])] = scores.get(str(r["score"]), 0) + r["count"]
            if r["error"] is not None:
                errors[r["error"]] = errors.get(r["error"], 0) + r["count"]
        summary["judges"][e.name] = {"model": e.model, "endpoints": e.endpoints, "prompt": checked[0][e.name].default.label,
                                     "scores": dict(sorted(scores.items())), "errors": errors}
    preset = PRESETS[judge_cfg.preset]
    summary["preset"] = {"name": preset.name, "source": preset.source, "parser": vars(judge_cfg.parser()),
                         "truncation": judge_cfg.truncation_rule}
    return summary
