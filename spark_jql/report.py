"""The report stage: one self-contained HTML page (PNG plots inlined) about a finished run.

Reads ``stats/`` (the scored columns without text), ``thresholds.json`` and, when
present, ``summary.json``; never the text. Everything heavy is a Spark aggregation
whose result is small (languages x bins), so the report works on billions of rows:

* per-language histograms of ``jql_score`` (bucketed counts) with the threshold lines;
* per-head score distributions (bucketed counts) and the Pearson correlation of
  every pair of heads (Spark's ``corr``);
* documents and tokens kept per language at each computed quantile (token retention,
  the number JQL reports against FineWeb2's heuristic filter);
* the run's counts and throughput from ``summary.json``.

Also writes ``report.json`` next to the page with the same numbers, for scripts.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from . import schema
from .errors import InputError
from .spark.io import join_path, read_text, write_text
from .thresholds import Thresholds, _qkey

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str, ensure_ascii=False)


# -- aggregation (Spark) ------------------------------------------------------
def _label(key: dict) -> str:
    return "_".join("∅" if v is None else str(v) for v in key.values())


def _bucket(col, lo: float, hi: float, bins: int):
    width = (hi - lo) / bins if hi > lo else 1.0
    b = F.floor((col - F.lit(lo)) / F.lit(width)).cast("int")
    return F.when(b < 0, 0).when(b >= bins, bins - 1).otherwise(b)


def collect_report_data(
    spark: SparkSession,
    output: str,
    bins: int = 40,
    filter_quantile: float | None = None,
) -> ReportData:
    """All numbers the report shows, from ``<output>/stats`` and ``<output>/thresholds.json``."""
    stats_path = join_path(output, "stats")
    try:
        stats = spark.read.parquet(stats_path)
    except Exception as err:
        raise InputError(f"cannot read {stats_path} (run annotate first): {str(err).splitlines()[0]}") from err
    thr_path = join_path(output, "thresholds.json")
    thresholds = Thresholds.from_json(read_text(spark, thr_path), thr_path)
    try:
        summary = json.loads(read_text(spark, join_path(output, "summary.json")))
    except (InputError, ValueError):
        summary = {}
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
        *[F.min(_q(c)).alias(f"min{i}") for i, c in enumerate(score_cols)],
        *[F.max(_q(c)).alias(f"max{i}") for i, c in enumerate(score_cols)],
        *[F.percentile_approx(F.when(~F.isnan(_q(c)), _q(c)), [0.002, 0.998], 1000).alias(f"p{i}") for i, c in enumerate(score_cols)],
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
    framed = stats.select(*lang_exprs, *[_q(c).alias(f"__s{i}") for i, c in enumerate(score_cols)],
                          _q(schema.TOKENS).alias("__tok"),
                          (_q(schema.TRUNCATED) if schema.TRUNCATED in stats.columns else F.lit(False)).alias("__trunc"))
    cond = [framed[k].eqNullSafe(table[k]) for k in lkeys]
    joined = framed.join(F.broadcast(table), on=cond, how="left").select(
        *[framed[k] for k in lkeys], *[framed[f"__s{i}"] for i in range(len(score_cols))], "__tok", "__trunc",
        *[F.coalesce(table[f"__t{j}"], F.lit(thresholds.global_threshold(q))).alias(f"__t{j}") for j, q in enumerate(qs)],
    )
    s = F.col(f"__s{si}")
    valid = s.isNotNull() & ~F.isnan(s)
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
        framed.select(*[F.when(~F.isnan(f"__s{i}"), F.col(f"__s{i}")).alias(f"__s{i}") for i in range(len(score_cols))])
        .select(pairs)
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
    return ReportData(
        output=output, score_column=score, heads=heads, quantiles=list(qs), filter_quantile=filter_quantile,
        language_columns=lang_names, bins=bins, score_range=(lo, hi), totals=totals, languages=ordered,
        head_histograms=head_histograms, correlations=correlations,
        global_thresholds=dict(thresholds.global_thresholds), summary=summary,
    )


# -- plots (matplotlib, Agg) ----------------------------------------------------
_QCOLORS = ["#d62728", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b"]
_HCOLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _digits(span: float) -> int:
    """Decimals that resolve a range of width ``span`` (real JQL scores: 2; tiny demo models: more)."""
    return max(2, min(8, int(math.ceil(-math.log10(span))) + 2)) if span > 0 else 3


def _axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=7)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _subplots(rows: int = 1, cols: int = 1, figsize=(6, 4), squeeze: bool = True):
    """A Figure without pyplot: no global state, no GUI backend, nothing shown twice in notebooks."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def plot_language_histograms(data: ReportData) -> str:
    shown = data.languages[:MAX_LANGUAGE_PLOTS]
    n = max(1, len(shown))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(3.6 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, lang in zip(axes.flat, shown):
        h = lang.histogram
        edges = h.edges
        d = _digits(h.hi - h.lo)
        ax.bar(edges[:-1], h.counts, width=(h.hi - h.lo) / len(h.counts), align="edge", color="#9ecae1", edgecolor="#3182bd", linewidth=0.4)
        for j, q in enumerate(data.quantiles):
            t = lang.thresholds[_qkey(q)]
            ls = "-" if data.filter_quantile is not None and abs(q - data.filter_quantile) < 1e-12 else "--"
            ax.axvline(t, color=_QCOLORS[j % len(_QCOLORS)], linestyle=ls, linewidth=1.4, label=f"q{q:g} = {t:.{d}f}")
        title = f"{lang.label}  (n={lang.scored:,})" + ("  global thr." if lang.fallback else "")
        ax.set_title(title, fontsize=9)
        _axis(ax)
        ax.legend(fontsize=6.5, loc="upper left", frameon=True, framealpha=0.8)
        ax.set_xlim(h.lo, h.hi)
    fig.supxlabel(data.score_column, fontsize=9)
    fig.supylabel("documents", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def plot_head_distributions(data: ReportData) -> str:
    items = list(data.head_histograms.items())
    n = len(items)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i, (ax, (name, h)) in enumerate(zip(axes.flat, items)):
        agg = name == data.score_column
        color = "#444444" if agg else _HCOLORS[i % len(_HCOLORS)]
        ax.bar(h.edges[:-1], h.counts, width=(h.hi - h.lo) / len(h.counts), align="edge", color=color, alpha=0.75)
        total = sum(h.counts)
        mean = sum(c * (a + b) / 2 for c, a, b in zip(h.counts, h.edges[:-1], h.edges[1:])) / total if total else float("nan")
        ax.set_title(f"{name}{'  (aggregate)' if agg else ''}", fontsize=9)
        ax.text(0.98, 0.95, f"n={total:,}\nmean≈{mean:.{_digits(h.hi - h.lo)}f}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
        ax.set_xlim(h.lo, h.hi)
        _axis(ax)
    fig.supxlabel("score (each panel on its own range)", fontsize=9)
    fig.supylabel("documents", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def plot_correlations(data: ReportData) -> str:
    names = list(data.correlations)
    n = len(names)
    m = [[(data.correlations[a][b] if data.correlations[a][b] is not None else float("nan")) for b in names] for a in names]
    fig, ax = _subplots(figsize=(0.9 * n + 2.4, 0.75 * n + 1.2))
    im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    for i in range(n):
        for j in range(n):
            v = m[i][j]
            ax.text(j, i, "n/a" if v != v else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v == v and abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Pearson r")
    fig.tight_layout()
    return _png(fig)


def plot_retention(data: ReportData, quantile: float) -> str:
    shown = data.languages[:MAX_LANGUAGE_PLOTS]
    key = _qkey(quantile)
    labels = [x.label for x in shown]
    docs = [x.kept_documents[key] / x.documents if x.documents else 0 for x in shown]
    toks = [x.kept_tokens[key] / x.tokens if x.tokens else 0 for x in shown]
    fig, ax = _subplots(figsize=(max(6, 0.55 * len(shown) + 2), 3.2))
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], docs, width=0.4, label="documents kept", color="#6baed6")
    ax.bar([x + 0.2 for x in xs], toks, width=0.4, label="tokens kept", color="#fd8d3c")
    ax.axhline(1 - quantile, color="grey", linestyle=":", linewidth=1, label=f"1 − q = {1 - quantile:g}")
    ax.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share kept")
    ax.legend(fontsize=8, frameon=False, ncols=3, loc="upper right")
    fig.tight_layout()
    return _png(fig)


# -- HTML -----------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.sub{color:#666;margin-top:0} .cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.card .v{font-size:1.3rem;font-weight:600} .card .k{font-size:.78rem;color:#666}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0} th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f8fa;position:sticky;top:0} td.l,th.l{text-align:left} tr.fb td{color:#8a6d3b}
img{max-width:100%;border:1px solid #eee;border-radius:4px} .note{color:#666;font-size:.85rem}
"""


def _fmt_int(v) -> str:
    return "–" if v is None else f"{int(v):,}"


def _pct(a, b) -> str:
    return "–" if not b else f"{100.0 * a / b:.1f}%"


def _count_cells(documents, scored, tokens, thresholds, kept_documents, kept_tokens, qs, dg, bold: bool) -> str:
    """The numeric cells of one row of the per-language table (the "all" row bolds its counts)."""
    b = (lambda x: f"<b>{x}</b>") if bold else (lambda x: x)  # noqa: E731
    cells = f"<td>{b(_fmt_int(documents))}</td><td>{b(_fmt_int(scored))}</td><td>{b(_fmt_int(tokens))}</td>"
    for q in qs:
        k = _qkey(q)
        cells += (f"<td>{thresholds.get(k, float('nan')):.{dg}f}</td>"
                  f"<td>{b(f'{_fmt_int(kept_documents[k])} ({_pct(kept_documents[k], documents)})')}</td>"
                  f"<td>{b(_fmt_int(kept_tokens[k]))}</td><td><b>{_pct(kept_tokens[k], tokens)}</b></td>")
    return cells


def render_html(data: ReportData) -> str:
    e = html.escape
    qs = data.quantiles
    fq = data.filter_quantile if data.filter_quantile in qs else qs[0]
    key = _qkey(fq)
    dg = _digits(data.score_range[1] - data.score_range[0])
    t = data.totals
    ann = data.summary.get("annotate") or {}
    flt = data.summary.get("filter") or {}
    cards = [
        ("documents", _fmt_int(t["documents"])),
        ("languages", _fmt_int(t["languages"])),
        ("tokens", _fmt_int(t["tokens"])),
        (f"documents kept (q{fq:g})", f"{_fmt_int(t['kept_documents'][key])} ({_pct(t['kept_documents'][key], t['documents'])})"),
        (f"tokens kept (q{fq:g})", f"{_fmt_int(t['kept_tokens'][key])} ({_pct(t['kept_tokens'][key], t['tokens'])})"),
    ]
    if ann.get("docs_per_second") is not None:
        cards.append(("scoring throughput", f"{ann['docs_per_second']:,} docs/s"))
    if ann.get("seconds") is not None:
        cards.append(("annotate wall time", f"{ann['seconds']:,} s"))
    card_html = "".join(f'<div class="card"><div class="v">{e(str(v))}</div><div class="k">{e(k)}</div></div>' for k, v in cards)

    run_rows = [
        ("input rows", _fmt_int(ann.get("input_rows"))), ("scored rows", _fmt_int(ann.get("scored_rows"))),
        ("rows with a score", _fmt_int(t["scored"])), ("rows without text (no score)", _fmt_int(t["documents"] - t["scored"])),
        ("truncated documents", f"{_fmt_int(t['truncated'])} ({_pct(t['truncated'], t['documents'])})"),
        ("scorer builds (one per Python worker)", _fmt_int(ann.get("scorer_builds"))),
        ("annotate seconds", e(str(ann.get("seconds", "–")))), ("docs/s", e(str(ann.get("docs_per_second", "–")))),
        ("filter quantile", e(str(flt.get("quantile", "–")))), ("kept rows (filter stage)", _fmt_int(flt.get("kept_rows"))),
        ("dropped rows by reason", e(json.dumps(flt.get("dropped_by_reason", {})) if flt else "–")),
        ("rows with a language without threshold", _fmt_int(flt.get("rows_with_unknown_language"))),
    ] + [(f"global threshold q{q:g}", f"{data.global_thresholds.get(_qkey(q), float('nan')):.{dg}f}") for q in qs]
    run_html = "".join(f'<tr><td class="l">{e(k)}</td><td>{v}</td></tr>' for k, v in run_rows)

    head = "".join(f'<th class="l">{e(n)}</th>' for n in data.language_columns)
    head += "<th>documents</th><th>scored</th><th>tokens</th>"
    for q in qs:
        head += f"<th>thr q{q:g}</th><th>docs kept q{q:g}</th><th>tokens kept q{q:g}</th><th>token retention q{q:g}</th>"
    body = []
    for lang in data.languages:
        cells = "".join(f'<td class="l">{e("∅" if v is None else str(v))}</td>' for v in lang.key.values())
        cells += _count_cells(lang.documents, lang.scored, lang.tokens, lang.thresholds,
                              lang.kept_documents, lang.kept_tokens, qs, dg, bold=False)
        body.append(f'<tr class="{"fb" if lang.fallback else ""}">{cells}</tr>')
    tot = f'<td class="l" colspan="{len(data.language_columns)}"><b>all</b></td>'
    tot += _count_cells(t["documents"], t["scored"], t["tokens"], data.global_thresholds,
                        t["kept_documents"], t["kept_tokens"], qs, dg, bold=True)
    body.append(f"<tr>{tot}</tr>")
    more = len(data.languages) - MAX_LANGUAGE_PLOTS
    more_note = f'<p class="note">Plots show the {MAX_LANGUAGE_PLOTS} largest languages; {more} more are in the table.</p>' if more > 0 else ""

    img = lambda b64, alt: f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">'  # noqa: E731
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spark_jql report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>spark_jql quality report</h1>
<p class="sub">{e(data.output)} · score <code>{e(data.score_column)}</code> = aggregate of {len(data.heads)} head(s) ·
quantiles {", ".join(f"{q:g}" for q in qs)} · filter keeps ≥ q{fq:g}</p>
<div class="cards">{card_html}</div>

<h2>Documents and tokens kept per language</h2>
<p class="note">Kept = score at or above the language's threshold (computed from <code>stats/</code> and <code>thresholds.json</code>, for every quantile).
Token retention = tokens of kept documents / all tokens, the measure JQL compares with FineWeb2's heuristic filter.
Rows in brown use the global threshold (fewer than min_docs documents).</p>
<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>
{img(plot_retention(data, fq), "retention per language")}

<h2>Score distribution per language</h2>
<p class="note">Histogram of <code>{e(data.score_column)}</code> ({data.bins} bins over [{data.score_range[0]:.{_digits(data.score_range[1] - data.score_range[0])}f}, {data.score_range[1]:.{_digits(data.score_range[1] - data.score_range[0])}f}], the 0.2%–99.8% quantile range
widened to include every threshold; values beyond fall into the edge bins);
vertical lines are the thresholds (solid: the filter's quantile, dashed: the others).</p>
{more_note}
{img(plot_language_histograms(data), "per-language histograms")}

<h2>Heads</h2>
<p class="note">Distribution of each head's score over all languages ({data.bins} bins per panel, between the 0.2% and 99.8% quantiles;
values beyond fall into the edge bins), and the Pearson correlation between every pair of heads and the aggregate (Spark's <code>corr</code>).</p>
{img(plot_head_distributions(data), "per-head distributions")}
{img(plot_correlations(data), "head correlations")}

<h2>Run</h2>
<table><tbody>{run_html}</tbody></table>
<p class="note">From <code>summary.json</code> (the last run of each stage) and <code>stats/</code>. Generated by <code>spark-jql report</code>.</p>
</body></html>
"""


def write_report(spark: SparkSession, output: str, path: str | None = None, bins: int = 40,
                 filter_quantile: float | None = None) -> dict:
    """Build the report for the run under ``output``; write ``report.html`` and ``report.json``. Returns a summary."""
    data = collect_report_data(spark, output, bins=bins, filter_quantile=filter_quantile)
    page = render_html(data)
    path = path or join_path(output, "report.html")
    write_text(spark, path, page)
    json_path = path[: -len(".html")] + ".json" if path.endswith(".html") else path + ".json"
    write_text(spark, json_path, data.to_json())
    log.info("report: %s", path)
    return {"report": path, "report_json": json_path, "languages": data.totals["languages"],
            "documents": data.totals["documents"], "bytes": len(page.encode("utf-8"))}
