"""What the report shows, collected by small Spark aggregations over stats/, thresholds.json and summary.json."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from spark_jql import schema
from spark_jql.errors import InputError
from spark_jql.layout import STATS, SUMMARY, THRESHOLDS, OutputLayout
from spark_jql.report.samples import SampleBand
from spark_jql.spark.storage import read_text
from spark_jql.thresholds import Thresholds, _qkey

log = logging.getLogger(__name__)


MAX_LANGUAGE_PLOTS = 30  # small multiples shown; the table always lists every language


def _q(name: str):
    return F.col("`" + name.replace("`", "``") + "`")


@dataclass
class Histogram:
    lo: float
    hi: float
    counts: list[int]

    @property
    def edges(self) -> list[float]:
        n = len(self.counts)
        return [self.lo + (self.hi - self.lo) * i / n for i in range(n + 1)]


@dataclass
class LanguageRow:
    key: dict
    label: str
    documents: int
    scored: int
    tokens: int
    truncated: int
    thresholds: dict[str, float]
    fallback: bool
    kept_documents: dict[str, int] = field(default_factory=dict)
    kept_tokens: dict[str, int] = field(default_factory=dict)
    histogram: Histogram | None = None


@dataclass
class ReportData:
    output: str
    score_column: str
    heads: list[str]
    quantiles: list[float]
    filter_quantile: float | None
    language_columns: list[str]
    bins: int
    score_range: tuple[float, float]  # range of the aggregate's histograms
    totals: dict
    languages: list[LanguageRow]
    head_histograms: dict[str, Histogram]
    correlations: dict[str, dict[str, float | None]]
    global_thresholds: dict[str, float]
    summary: dict
    warnings: list[dict] = field(default_factory=list)  # degenerate distributions, per language
    samples: list[SampleBand] = field(default_factory=list)  # report.samples: example documents per score band

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str, ensure_ascii=False)


# -- aggregation (Spark) ------------------------------------------------------
def _label(key: dict) -> str:
    return "_".join("∅" if v is None else str(v) for v in key.values())


def _scored(col):
    """The score, or null where it is NaN: no score, as in thresholds and filter (Spark 3.5 keeps pandas' NaN)."""
    return F.when(~F.isnan(col), col)


def _finite(col):
    """Finite scores only: the plotted range (Spark's min/max would return NaN or infinity)."""
    return F.when(~F.isnan(col) & (F.abs(col) != F.lit(float("inf"))), col)


def _bucket(col, lo: float, hi: float, bins: int):
    width = (hi - lo) / bins if hi > lo else 1.0
    # Clamped first: infinite scores land in the edge bins (no int overflow); greatest/least skip nulls, so null stays null.
    clamped = F.when(col.isNotNull(), F.least(F.greatest(col, F.lit(lo)), F.lit(hi)))
    b = F.floor((clamped - F.lit(lo)) / F.lit(width)).cast("int")
    return F.when(b >= bins, bins - 1).otherwise(b)


def collect_report_data(
    spark: SparkSession,
    output: str,
    bins: int = 40,
    filter_quantile: float | None = None,
) -> ReportData:
    """All numbers the report shows, from ``<output>/stats`` and ``<output>/thresholds.json``."""
    layout = OutputLayout(output)
    stats_path = layout.path(STATS)
    try:
        stats = spark.read.parquet(stats_path)
    except Exception as err:
        raise InputError(f"cannot read {stats_path} (run annotate first): {str(err).splitlines()[0]}") from err
    thr_path = layout.path(THRESHOLDS)
    thresholds = Thresholds.from_json(read_text(spark, thr_path), thr_path)
    try:
        summary = json.loads(read_text(spark, layout.path(SUMMARY)))
    except (InputError, ValueError):  # absent or cut short: the report does without the run's counts
        summary = {}
    summary = summary if isinstance(summary, dict) else {}
    if filter_quantile is None:
        filter_quantile = (summary.get("filter") or {}).get("quantile")
    score = thresholds.score_column
    heads = [c[len(schema.SCORE_PREFIX):] for c in stats.columns if c.startswith(schema.SCORE_PREFIX)]
    missing = [c for c in [score, schema.TOKENS] if c not in stats.columns]
    if missing:
        raise InputError(f"{stats_path} lacks column(s) {missing}; it has {stats.columns}")
    score_cols = [schema.head_column(h) for h in heads] + ([score] if score not in [schema.head_column(h) for h in heads] else [])
    lang_names = thresholds.language_columns
    if all(n in stats.columns for n in lang_names):
        lang_exprs = [_q(n).cast("string").alias(f"__l{i}") for i, n in enumerate(lang_names)]
    elif len(thresholds.languages) == 1:  # columns.constant_language: one language, no column
        lang_exprs = [F.lit(thresholds.languages[0].language[n]).cast("string").alias(f"__l{i}") for i, n in enumerate(lang_names)]
    else:
        raise InputError(f"{stats_path} lacks the language column(s) {lang_names} that the thresholds were computed by")
    lkeys = [f"__l{i}" for i in range(len(lang_names))]
    qs = thresholds.quantiles

    # 1. a robust range per score column (one pass): the 0.2% / 99.8% quantiles, widened a little and
    #    clipped to min/max; values outside fall into the edge bins.
    rng = stats.agg(
        *[F.min(_finite(_q(c))).alias(f"min{i}") for i, c in enumerate(score_cols)],
        *[F.max(_finite(_q(c))).alias(f"max{i}") for i, c in enumerate(score_cols)],
        *[F.percentile_approx(_finite(_q(c)), [0.002, 0.998], 1000).alias(f"p{i}") for i, c in enumerate(score_cols)],
    ).first()
    ranges = []
    for i in range(len(score_cols)):
        mn, mx, p = rng[f"min{i}"], rng[f"max{i}"], rng[f"p{i}"]
        if mn is None or mx is None or not p:
            ranges.append((0.0, 1.0))
            continue
        lo, hi = float(p[0]), float(p[1])
        pad = 0.03 * (hi - lo)
        lo, hi = max(float(mn), lo - pad), min(float(mx), hi + pad)
        if hi <= lo:
            lo, hi = float(mn) - 0.5, float(mx) + 0.5
        ranges.append((lo, hi))
    si = score_cols.index(score)
    lo, hi = ranges[si]
    all_t = [v for e in thresholds.languages for v in e.thresholds.values()] + list(thresholds.global_thresholds.values())
    if all_t:  # every threshold line inside the plot
        lo, hi = min([lo] + all_t), max([hi] + all_t)
        ranges[si] = (lo, hi)

    # 2. per-language counts, tokens and kept counts at every quantile (one pass, a broadcast join of the tiny threshold table)
    key_schema = [StructField(k, StringType()) for k in lkeys]
    table_schema = StructType(key_schema + [StructField(f"__t{j}", DoubleType()) for j in range(len(qs))])
    rows = [
        tuple(None if e.language[n] is None else str(e.language[n]) for n in lang_names)
        + tuple(e.thresholds[_qkey(q)] for q in qs)
        for e in thresholds.languages
    ]
    table = spark.createDataFrame(rows, table_schema)
    framed = stats.select(*lang_exprs, *[_scored(_q(c)).alias(f"__s{i}") for i, c in enumerate(score_cols)],
                          _q(schema.TOKENS).alias("__tok"),
                          (_q(schema.TRUNCATED) if schema.TRUNCATED in stats.columns else F.lit(False)).alias("__trunc"))
    cond = [framed[k].eqNullSafe(table[k]) for k in lkeys]
    joined = framed.join(F.broadcast(table), on=cond, how="left").select(
        *[framed[k] for k in lkeys], *[framed[f"__s{i}"] for i in range(len(score_cols))], "__tok", "__trunc",
        *[F.coalesce(table[f"__t{j}"], F.lit(thresholds.global_threshold(q))).alias(f"__t{j}") for j, q in enumerate(qs)],
    )
    s = F.col(f"__s{si}")
    valid = s.isNotNull()  # NaN scores are null in framed
    tok = F.coalesce(F.col("__tok").cast("long"), F.lit(0))
    aggs = [F.count(F.lit(1)).alias("docs"), F.count(F.when(valid, 1)).alias("scored"), F.sum(tok).alias("tokens"),
            F.count(F.when(F.col("__trunc"), 1)).alias("truncated")]
    for j in range(len(qs)):
        keep = valid & (s >= F.col(f"__t{j}"))
        aggs += [F.count(F.when(keep, 1)).alias(f"kd{j}"), F.sum(F.when(keep, tok).otherwise(0)).alias(f"kt{j}")]
    per_lang = joined.groupBy(*lkeys).agg(*aggs).collect()

    # 3. histogram of the aggregate per language (bucketed counts)
    hist_rows = (
        framed.where(valid)
        .groupBy(*lkeys, _bucket(s, lo, hi, bins).alias("b"))
        .count()
        .collect()
    )
    # 4. per-head histograms over all languages: one pass, heads unpivoted with explode
    pairs = F.explode(F.array(*[
        F.struct(F.lit(i).alias("h"), _bucket(F.col(f"__s{i}"), *ranges[i], bins).alias("b"))
        for i in range(len(score_cols))
    ])).alias("p")
    head_rows = (
        framed.select(pairs)
        .where(F.col("p.b").isNotNull())
        .groupBy("p.h", "p.b")
        .count()
        .collect()
    )
    # 5. correlation between heads (and the aggregate): Spark's corr, one pass
    corr_pairs = [(a, b) for a in range(len(score_cols)) for b in range(a + 1, len(score_cols))]
    corr_row = framed.agg(*[F.corr(f"__s{a}", f"__s{b}").alias(f"c{a}_{b}") for a, b in corr_pairs]).first() if corr_pairs else None

    names = [schema.head_column(h) for h in heads]
    display = heads + ([score] if score not in names else [])
    correlations: dict[str, dict[str, float | None]] = {n: {m: (1.0 if n == m else None) for m in display} for n in display}
    for a, b in corr_pairs:
        v = corr_row[f"c{a}_{b}"]
        v = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        correlations[display[a]][display[b]] = correlations[display[b]][display[a]] = v
    head_histograms = {n: Histogram(*ranges[i], [0] * bins) for i, n in enumerate(display)}
    for r in head_rows:
        head_histograms[display[r["h"]]].counts[r["b"]] = int(r["count"])

    entries = {tuple(None if e.language[n] is None else str(e.language[n]) for n in lang_names): e for e in thresholds.languages}
    langs: dict[tuple, LanguageRow] = {}
    for r in per_lang:
        k = tuple(r[c] for c in lkeys)
        key = dict(zip(lang_names, k))
        e = entries.get(k)
        langs[k] = LanguageRow(
            key=key, label=_label(key), documents=int(r["docs"]), scored=int(r["scored"]), tokens=int(r["tokens"] or 0),
            truncated=int(r["truncated"]),
            thresholds={_qkey(q): (e.thresholds[_qkey(q)] if e else thresholds.global_threshold(q)) for q in qs},
            fallback=bool(e.fallback) if e else True,
            kept_documents={_qkey(q): int(r[f"kd{j}"]) for j, q in enumerate(qs)},
            kept_tokens={_qkey(q): int(r[f"kt{j}"] or 0) for j, q in enumerate(qs)},
            histogram=Histogram(lo, hi, [0] * bins),
        )
    for r in hist_rows:
        k = tuple(r[c] for c in lkeys)
        langs[k].histogram.counts[r["b"]] = int(r["count"])
    ordered = sorted(langs.values(), key=lambda x: (-x.documents, x.label))
    totals = {
        "documents": sum(x.documents for x in ordered),
        "scored": sum(x.scored for x in ordered),
        "tokens": sum(x.tokens for x in ordered),
        "truncated": sum(x.truncated for x in ordered),
        "languages": len(ordered),
        "kept_documents": {_qkey(q): sum(x.kept_documents[_qkey(q)] for x in ordered) for q in qs},
        "kept_tokens": {_qkey(q): sum(x.kept_tokens[_qkey(q)] for x in ordered) for q in qs},
    }
    data = ReportData(
        output=output, score_column=score, heads=heads, quantiles=list(qs), filter_quantile=filter_quantile,
        language_columns=lang_names, bins=bins, score_range=(lo, hi), totals=totals, languages=ordered,
        head_histograms=head_histograms, correlations=correlations,
        global_thresholds=dict(thresholds.global_thresholds), summary=summary,
    )
    data.warnings = distribution_warnings(data)
    return data


NEAR_CONSTANT_SHARE = 0.15  # a language's scores spanning at most this share of the plotted range are near-constant


def distribution_warnings(data: ReportData) -> list[dict]:
    """Languages whose scores cannot rank documents: near-constant scores (all within ``NEAR_CONSTANT_SHARE`` of the
    score range), or thresholds of two quantiles within one histogram bin of each other (the filter's cut is then
    noise). From the histograms and thresholds already collected: no pass over the data."""
    lo, hi = data.score_range
    width = hi - lo
    noise = width / data.bins if width > 0 else 0.0
    found = []
    for lang in data.languages:
        reasons = []
        counts = lang.histogram.counts if lang.histogram is not None else []
        filled = [i for i, c in enumerate(counts) if c]
        if filled and lang.scored > 1:
            first, last = lang.histogram.edges[filled[0]], lang.histogram.edges[filled[-1] + 1]
            if width <= 0 or last - first <= NEAR_CONSTANT_SHARE * width:
                reasons.append(f"near-constant scores: all {lang.scored:,} scored documents between {first:.2f} and {last:.2f}")
        if not lang.fallback:
            ts = [(q, lang.thresholds[_qkey(q)]) for q in data.quantiles]
            for (qa, ta), (qb, tb) in zip(ts, ts[1:]):
                if abs(tb - ta) <= noise:
                    reasons.append(f"q{qa:g} = q{qb:g} within noise ({ta:.3f} vs {tb:.3f}, less than one bin of {noise:.3f})")
        if reasons:
            found.append({"language": lang.label, "documents": lang.scored, "reasons": reasons})
    return found


# -- plots (matplotlib, Agg) ----------------------------------------------------
_QCOLORS = ["#d62728", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b"]
_HCOLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
