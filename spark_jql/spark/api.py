"""DataFrame-in, DataFrame-out functions for notebooks and jobs (chain with ``df.transform``).

    scored = df.transform(annotate, scorer_config)
    thresholds = compute_thresholds(scored)
    kept, dropped = apply_thresholds(scored, thresholds, quantile=0.6)
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from spark_jql import schema
from spark_jql.config import ColumnsConfig, ScorerConfig, ThresholdConfig
from spark_jql.errors import InputError
from spark_jql.spark.notebook import notebook_beacon
from spark_jql.spark.progress import active_beacon
from spark_jql.spark.udf import make_score_udf
from spark_jql.spark.workers import check_worker_python
from spark_jql.thresholds import LanguageThreshold, Thresholds, _qkey

_RESULT = "__jql_result"


def quoted(name: str) -> Column:
    """A column by its literal name (dots, hyphens and spaces included)."""
    return F.col("`" + name.replace("`", "``") + "`")


def require_columns(df: DataFrame, names: list[str], role: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise InputError(f"{role} column(s) {missing} not found; the input has columns {df.columns}")


def require_text_column(df: DataFrame, text_column: str) -> None:
    """The text column exists and holds strings; otherwise an error naming it (and its type)."""
    from spark_jql.spark.preflight import check_text_column

    check_text_column(df.schema, text_column)


def annotate(
    df: DataFrame,
    scorer: ScorerConfig | None = None,
    text_column: str = "text",
    arrow_batch_size: int | None = None,
    builds=None,
    docs=None,
    build_pids=None,
) -> DataFrame:
    """Add ``score_<head>``, ``jql_score``, ``jql_tokens``, ``jql_truncated``; keep every input column and row.

    ``arrow_batch_size``: rows per batch handed to the scorer, at most (the session's settings are left
    alone; see :func:`spark_jql.spark.udf.rebatch`). ``builds``/``docs`` are optional accumulators
    (see :func:`spark_jql.spark.udf.make_score_udf`).
    """
    scorer = scorer or ScorerConfig()
    require_text_column(df, text_column)
    added = schema.output_columns([h.name for h in scorer.heads], scorer.store_embedding != "none")
    clash = [c for c in added if c in df.columns]
    if clash:
        raise InputError(f"input already has output column(s) {clash}; drop or rename them before annotating")
    check_worker_python(df.sparkSession)
    beacon = active_beacon() or notebook_beacon(df.sparkSession)  # a notebook's bar counts this annotate's documents
    score = make_score_udf(scorer, builds=builds, docs=docs, build_pids=build_pids, batch_size=arrow_batch_size,
                           beacon=beacon)
    with_result = df.select("*", score(quoted(text_column)).alias(_RESULT))
    meta = _metadata(scorer, scorer.store_embedding if scorer.store_embedding != "none" else "float32")
    return with_result.select(
        *[quoted(c) for c in df.columns], *[F.col(_RESULT).getField(c).alias(c, metadata=meta) for c in added]
    )


def _metadata(scorer: ScorerConfig, encoding: str) -> dict:
    """Provenance written into the Spark metadata of every score and embedding column."""
    from spark_jql.scoring.models import embedding_metadata

    return {schema.PROVENANCE_KEY: embedding_metadata(scorer.embedder, encoding, [h.name for h in scorer.heads])}


def score_embeddings(
    df: DataFrame,
    scorer: ScorerConfig | None = None,
    embedding_column: str = schema.EMBEDDING,
    encoding: str = "auto",
    arrow_batch_size: int | None = None,
) -> DataFrame:
    """Heads-only scoring: stored embeddings in, ``score_<head>``, ``jql_score`` (+ token columns) out.

    No encoder is loaded; the heads run on the CPU of each executor. The column may be
    ``annotate``'s ``jql_embedding`` (binary float16/bfloat16), ``embed``'s ``embedding`` or
    a published embedding dataset (``array<float>``). Before any task runs, the heads are read on
    the driver and checked against the column: its width, its encoding and, where its metadata
    records them, the embedder and pooling (a head trained on another embedder is an error).
    Existing score columns of these heads and ``jql_score`` are replaced; ``jql_tokens`` and
    ``jql_truncated`` are kept when present and null otherwise. Every row is kept.
    """
    from spark_jql.spark.stored import check_embedding_input
    from spark_jql.spark.udf import EMBEDDING_PROBLEM, make_heads_udf

    scorer = scorer or ScorerConfig()
    encoding, meta = check_embedding_input(df, scorer, embedding_column, encoding)
    names = [h.name for h in scorer.heads]
    recomputed = [schema.head_column(n) for n in names] + [schema.AGGREGATE]
    check_worker_python(df.sparkSession)
    heads = make_heads_udf(scorer, encoding, arrow_batch_size, beacon=active_beacon() or notebook_beacon(df.sparkSession))
    with_result = df.select("*", heads(quoted(embedding_column)).alias(_RESULT))
    problem = F.col(_RESULT).getField(EMBEDDING_PROBLEM)
    message = F.concat(F.lit(BAD_EMBEDDING), F.input_file_name(), F.lit(f": embedding column {embedding_column!r} "
                       "(columns.embedding), "), _document(df), F.lit(": "), problem)
    with_result = with_result.where(F.when(problem.isNotNull(), F.raise_error(message)).otherwise(F.lit(True)))
    out_meta = {schema.PROVENANCE_KEY: {**meta, "heads": names}}

    def result(c: str) -> Column:
        return F.col(_RESULT).getField(c).alias(c, metadata=out_meta)

    missing = {schema.TOKENS: "int", schema.TRUNCATED: "boolean"}
    return with_result.select(
        *[result(c) if c in recomputed else quoted(c) for c in df.columns],  # rescored columns stay in place
        *[result(c) for c in recomputed if c not in df.columns],
        *[F.lit(None).cast(t).alias(c) for c, t in missing.items() if c not in df.columns],
    )


BAD_EMBEDDING = "spark_jql bad stored embedding in "


def _document(df: DataFrame) -> Column:
    """How an error names a row: its ``id`` when the frame has one."""
    if "id" in df.columns:
        return F.concat(F.lit("document id="), F.coalesce(quoted("id").cast("string"), F.lit("null")))
    return F.lit("a document (no id column)")


def language_key(df: DataFrame, columns: ColumnsConfig) -> list[tuple[str, Column]]:
    """(name in the artifact, expression) per language key column."""
    if columns.constant_language is not None:
        return [("language", F.lit(columns.constant_language))]
    require_columns(df, columns.language, "language")
    return [(c, quoted(c)) for c in columns.language]


def _key_cols(n: int) -> list[str]:
    return [f"__jql_lang{i}" for i in range(n)]


def compute_thresholds(
    scored: DataFrame,
    thresholds: ThresholdConfig | None = None,
    columns: ColumnsConfig | None = None,
    score_column: str = schema.AGGREGATE,
) -> Thresholds:
    """Per-language quantiles of ``score_column`` in one pass (``percentile_approx`` over a rollup).

    Null scores (documents without text) are not counted. Languages with fewer than
    ``min_docs`` scored documents use the global thresholds (``fallback = True``).
    """
    thresholds = thresholds or ThresholdConfig()
    columns = columns or ColumnsConfig()
    require_columns(scored, [score_column], "score")
    key = language_key(scored, columns)
    names, keys = [n for n, _ in key], _key_cols(len(key))
    accuracy = max(1, int(round(1.0 / thresholds.relative_error)))
    qs = thresholds.quantiles
    frame = scored.select(*[expr.alias(k) for (_, expr), k in zip(key, keys)], quoted(score_column).alias("__s"))
    rows = (
        frame.where(F.col("__s").isNotNull() & ~F.isnan("__s"))
        .rollup(*keys)
        .agg(
            F.percentile_approx("__s", qs, accuracy).alias("q"),
            F.count(F.lit(1)).alias("n"),
            F.grouping_id().alias("gid"),
        )
        .where(F.col("gid").isin(0, (1 << len(keys)) - 1))
        .collect()
    )
    # language_key always gives at least one key column: gid 0 = a language, the other gid = the grand total.
    total = [r for r in rows if r["gid"] != 0]
    if not total or not total[0]["q"]:
        raise InputError(f"no scored documents: column {score_column!r} is null everywhere, no thresholds can be computed")
    global_n = total[0]["n"]
    global_q = {_qkey(q): float(v) for q, v in zip(qs, total[0]["q"])}
    entries = []
    for r in sorted((r for r in rows if r["gid"] == 0), key=lambda r: [str(r[k]) for k in keys]):
        own = {_qkey(q): float(v) for q, v in zip(qs, r["q"])}
        fallback = r["n"] < thresholds.min_docs
        entries.append(
            LanguageThreshold(
                language={n: r[k] for n, k in zip(names, keys)},
                documents=int(r["n"]),
                thresholds=dict(global_q) if fallback else own,
                fallback=fallback,
                own_thresholds=own,
            )
        )
    return Thresholds(
        score_column=score_column,
        language_columns=names,
        quantiles=list(qs),
        relative_error=thresholds.relative_error,
        min_docs=thresholds.min_docs,
        global_documents=int(global_n),
        global_thresholds=global_q,
        languages=entries,
    )


UNKNOWN_LANGUAGE = "__jql_unknown_language"
KEEP = "__jql_keep"


def mark_rows(scored: DataFrame, thresholds: Thresholds, quantile: float, columns: ColumnsConfig | None = None) -> DataFrame:
    """Scored rows + ``jql_threshold`` (global if the language is unknown) and two private flags.

    ``__jql_unknown_language``: the language had no threshold; ``__jql_keep``: the
    score is at or above the threshold (never null). The filter and its counts both
    derive from this one frame.
    """
    columns = columns or ColumnsConfig()
    key = language_key(scored, columns)
    names, keys = [n for n, _ in key], _key_cols(len(key))
    if names != thresholds.language_columns:
        raise InputError(f"thresholds were computed per {thresholds.language_columns}, but the language key is {names}")
    qkey = _qkey(quantile)
    global_t = thresholds.global_threshold(quantile)
    with_key = scored.select("*", *[expr.alias(k) for (_, expr), k in zip(key, keys)])
    key_types = [with_key.schema[k].dataType for k in keys]
    table_schema = StructType(
        [StructField(f"__t_{k}", t) for k, t in zip(keys, key_types)] + [StructField("__t_threshold", DoubleType())]
    )
    table_rows = [tuple(e.language[n] for n in names) + (e.thresholds[qkey],) for e in thresholds.languages]
    table = scored.sparkSession.createDataFrame(table_rows, table_schema)
    cond = [with_key[k].eqNullSafe(table[f"__t_{k}"]) for k in keys]
    joined = with_key.join(F.broadcast(table), on=cond, how="left")
    score = quoted(thresholds.score_column)
    threshold = F.coalesce(F.col("__t_threshold"), F.lit(global_t))
    return joined.select(
        *[quoted(c) for c in scored.columns],
        threshold.alias(schema.THRESHOLD),
        F.col("__t_threshold").isNull().alias(UNKNOWN_LANGUAGE),
        (score.isNotNull() & ~F.isnan(score) & (score >= threshold)).alias(KEEP),
    )


def apply_thresholds(
    scored: DataFrame,
    thresholds: Thresholds,
    quantile: float = 0.6,
    columns: ColumnsConfig | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(kept, dropped): kept has score >= its language's threshold; dropped carries ``jql_drop_reason``.

    Every scored row lands in exactly one of the two. Rows without a score are
    dropped with reason ``no_score``; rows below the threshold with ``below_threshold``.
    Both carry ``jql_threshold``.
    """
    return split_marked(mark_rows(scored, thresholds, quantile, columns), thresholds.score_column)


def split_marked(marked: DataFrame, score_column: str) -> tuple[DataFrame, DataFrame]:
    """(kept, dropped) from :func:`mark_rows`' output, without its private flags."""
    kept = marked.where(F.col(KEEP)).drop(UNKNOWN_LANGUAGE, KEEP)
    dropped = marked.where(~F.col(KEEP)).drop(UNKNOWN_LANGUAGE, KEEP).withColumn(schema.DROP_REASON, drop_reason(score_column))
    return kept, dropped


def drop_reason(score_column: str) -> Column:
    """Why a row that is not kept was dropped: ``no_score`` (null or NaN) or ``below_threshold``."""
    score = quoted(score_column)
    return F.when(score.isNull() | F.isnan(score), F.lit("no_score")).otherwise(F.lit("below_threshold"))
