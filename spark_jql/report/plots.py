"""The report's PNG plots (matplotlib, Agg backend), returned as base64 strings for inlining."""

from __future__ import annotations

import base64
import importlib.util
import io
import logging
import math

from spark_jql.errors import InputError
from spark_jql.report.data import _HCOLORS, _QCOLORS, MAX_LANGUAGE_PLOTS, ReportData
from spark_jql.thresholds import _qkey

log = logging.getLogger(__name__)


def require_plotting() -> None:
    """Fail before any Spark work when matplotlib (the ``report`` extra) is missing, saying what to install."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("the report draws its plots with matplotlib, which is not installed: pip install 'spark_jql[report]'")


def _digits(span: float) -> int:
    """Decimals that resolve a range of width ``span`` (real JQL scores: 2; tiny demo models: more)."""
    return max(2, min(8, int(math.ceil(-math.log10(span))) + 2)) if span > 0 else 3


def _axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=7)


def _count_axis(ax, counts: list[int]) -> None:
    """Document counts: whole numbers on the y-axis, and headroom above the tallest bar for the legend or label."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(1, max(counts, default=0)) * 1.6)


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
        _count_axis(ax, h.counts)
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
        _count_axis(ax, h.counts)
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
    return _png(retention_figure(data, quantile))


def retention_figure(data: ReportData, quantile: float):
    """Share of documents and tokens kept per language; the legend sits above the axes, never over a bar."""
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
    ax.legend(fontsize=8, frameon=False, ncols=3, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
    fig.tight_layout()
    return fig


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
.warn{background:#fff4e5;border:1px solid #f0ad4e;border-radius:4px;padding:.5rem 1rem;margin:1rem 0}
h3{font-size:1rem;margin:1.2rem 0 .3rem} ol.samples{font-size:.85rem;padding-left:1.6rem}
ol.samples li{margin:.35rem 0} ol.samples .k{color:#666;font-variant-numeric:tabular-nums}
ol.samples .t{white-space:pre-wrap;overflow-wrap:anywhere}
"""
