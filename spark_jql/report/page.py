"""The report stage: one self-contained HTML page (PNG plots inlined) about a finished run.

Reads ``stats/`` (the scored columns without text), ``thresholds.json`` and, when
present, ``summary.json``; the text (``scored/``) only where ``report.samples`` asks for
examples (report/samples.py). Everything heavy is a Spark aggregation whose result is
small (languages x bins, or N examples per band), so the report works on billions of rows:

* per-language histograms of ``jql_score`` (bucketed counts) with the threshold lines;
* per-head score distributions (bucketed counts) and the Pearson correlation of
  every pair of heads (Spark's ``corr``);
* documents and tokens kept per language at each computed quantile (token retention,
  the number JQL reports against FineWeb2's heuristic filter);
* the run's counts and throughput from ``summary.json``.

Also writes ``report.json`` next to the page with the same numbers, for scripts.
"""

from __future__ import annotations

import html
import logging

from pyspark.sql import SparkSession

from spark_jql.config import ReportConfig
from spark_jql.layout import REPORT_HTML, REPORT_JSON, OutputLayout
from spark_jql.report.data import MAX_LANGUAGE_PLOTS, ReportData, collect_report_data
from spark_jql.report.plots import (
    _CSS,
    _digits,
    plot_correlations,
    plot_head_distributions,
    plot_language_histograms,
    plot_retention,
)
from spark_jql.report.samples import collect_samples
from spark_jql.spark.storage import write_text
from spark_jql.thresholds import _qkey

log = logging.getLogger(__name__)


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


def _throughput(ann: dict) -> tuple[str, str] | None:
    """The throughput card: documents / seconds of the scoring actions (older summaries: of the whole stage)."""
    rate = ann.get("docs_per_second")
    if rate is None:
        return None
    if ann.get("scoring_seconds") is None:
        return "annotate throughput (whole stage)", f"{rate:,} docs/s"
    return f"scoring throughput ({_fmt_int(ann.get('scored_now'))} docs in {ann['scoring_seconds']:,.1f} s)", f"{rate:,} docs/s"


def _run_sections(data: ReportData, dg: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """The run table: (stage, [(what, value)]) from summary.json and stats/, in plain words."""
    t, summary = data.totals, data.summary
    ann, thr, flt = (summary.get(k) or {} for k in ("annotate", "thresholds", "filter"))
    annotate = [
        ("documents scored (rows with text)", f"{_fmt_int(t['scored'])} of {_fmt_int(t['documents'])}"),
        ("rows without text (kept, no score)", _fmt_int(t["documents"] - t["scored"])),
        ("documents truncated to max_length", f"{_fmt_int(t['truncated'])} ({_pct(t['truncated'], t['documents'])})"),
    ]
    if ann:
        units = f"{_fmt_int(ann.get('input_files'))} files in {_fmt_int(ann.get('units'))} unit(s)"
        if ann.get("units_resumed"):
            units += f", {_fmt_int(ann['units_resumed'])} resumed from an earlier run"
        annotate = [("input", units), ("rows read / written", f"{_fmt_int(ann.get('input_rows'))} / {_fmt_int(ann.get('scored_rows'))}")] + annotate
        if ann.get("skipped_files"):
            annotate.append(("unreadable files skipped", _fmt_int(len(ann["skipped_files"]))))
        annotate.append(("scorer builds (one per Python worker)", _fmt_int(ann.get("scorer_builds"))))
        if ann.get("scoring_seconds") is not None:
            annotate.append(("scoring (model loads included)",
                             f"{_fmt_int(ann.get('scored_now'))} docs in {ann['scoring_seconds']:,.1f} s = {ann.get('docs_per_second') or '–'} docs/s"))
        annotate.append(("stage wall time (listing, counting, stats/ too)", f"{ann.get('seconds', '–')} s"))
    thresholds = [(f"global threshold q{q:g}", f"{data.global_thresholds.get(_qkey(q), float('nan')):.{dg}f}") for q in data.quantiles]
    if thr:
        thresholds.insert(0, ("languages (on the global threshold: fewer than min_docs)",
                              f"{_fmt_int(thr.get('languages'))} ({_fmt_int(thr.get('fallback_languages'))})"))
    filtered = []
    if flt:
        reasons = ", ".join(f"{k}: {_fmt_int(v)}" for k, v in sorted((flt.get("dropped_by_reason") or {}).items())) or "–"
        filtered = [
            ("quantile kept above", f"q{flt.get('quantile'):g}" if flt.get("quantile") is not None else "–"),
            ("kept / dropped", f"{_fmt_int(flt.get('kept_rows'))} / {_fmt_int(flt.get('dropped_rows'))}"),
            ("dropped by reason", reasons),
            ("rows whose language had no threshold (global used)", _fmt_int(flt.get("rows_with_unknown_language"))),
        ]
    return [("annotate", annotate), ("thresholds", thresholds), ("filter", filtered)]


def _samples_html(data: ReportData) -> str:
    """The examples section (report.samples); every snippet escaped, so a document's markup shows as text."""
    if not data.samples:
        return ""
    e = html.escape
    per_band = max(len(b.samples) for b in data.samples)
    bands = "".join(
        f"<h3>{e(data.score_column)} {e(b.label)}</h3><ol class=\"samples\">"
        + "".join(f'<li><span class="k">{s.score:.2f} · {e(s.language)}</span> <span class="t">{e(s.text)}</span></li>'
                  for s in b.samples)
        + "</ol>"
        for b in data.samples
    )
    return (f"<h2>Example documents per score band</h2>\n<p class=\"note\">Up to {per_band} documents of "
            f"<code>scored/</code> per band of <code>{e(data.score_column)}</code>, chosen by a hash of their text (the "
            "same ones on every run), each cut to <code>report.sample_chars</code> characters (… marks a cut). "
            "Set <code>report.samples: 0</code> to leave the text out of the page.</p>\n" + bands)


def render_html(data: ReportData) -> str:
    e = html.escape
    qs = data.quantiles
    fq = data.filter_quantile if data.filter_quantile in qs else qs[0]
    key = _qkey(fq)
    dg = _digits(data.score_range[1] - data.score_range[0])
    t = data.totals
    ann = data.summary.get("annotate") or {}
    cards = [
        ("documents", _fmt_int(t["documents"])),
        ("languages", _fmt_int(t["languages"])),
        ("tokens", _fmt_int(t["tokens"])),
        (f"documents kept (q{fq:g})", f"{_fmt_int(t['kept_documents'][key])} ({_pct(t['kept_documents'][key], t['documents'])})"),
        (f"tokens kept (q{fq:g})", f"{_fmt_int(t['kept_tokens'][key])} ({_pct(t['kept_tokens'][key], t['tokens'])})"),
    ]
    throughput = _throughput(ann)
    if throughput:
        cards.append(throughput)
    if ann.get("seconds") is not None:
        cards.append(("annotate stage wall time", f"{ann['seconds']:,.1f} s"))
    card_html = "".join(f'<div class="card"><div class="v">{e(str(v))}</div><div class="k">{e(k)}</div></div>' for k, v in cards)
    run_html = "".join(
        f'<tr><th class="l" colspan="2">{e(stage)}</th></tr>'
        + "".join(f'<tr><td class="l">{e(k)}</td><td>{e(v)}</td></tr>' for k, v in rows)
        for stage, rows in _run_sections(data, dg) if rows
    )

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
    warn_html = ""
    if data.warnings:
        items = "".join(f"<li><b>{e(w['language'])}</b> ({w['documents']:,} documents): {e('; '.join(w['reasons']))}</li>"
                        for w in data.warnings)
        warn_html = (f'<div class="warn"><b>Warning: {len(data.warnings)} language(s) with a degenerate score '
                     f"distribution</b>; their thresholds do not separate documents, so check the input or the heads "
                     f"before trusting what is kept there:<ul>{items}</ul></div>")
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
{warn_html}

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

{_samples_html(data)}

<h2>Run</h2>
<table><tbody>{run_html}</tbody></table>
<p class="note">From <code>summary.json</code> (the last run of each stage) and <code>stats/</code>. Generated by <code>spark-jql report</code>.</p>
</body></html>
"""


def write_report(spark: SparkSession, output: str, path: str | None = None, bins: int = 40,
                 filter_quantile: float | None = None, samples: ReportConfig | None = None, text_column: str = "text") -> dict:
    """Build the report for the run under ``output``; write ``report.html`` and ``report.json``. Returns a summary.

    ``samples`` (the config's ``report`` section) with ``samples > 0`` adds example documents per score band,
    read from ``scored/``'s ``text_column``."""
    data = collect_report_data(spark, output, bins=bins, filter_quantile=filter_quantile)
    if samples is not None and samples.samples > 0:
        data.samples = collect_samples(spark, output, text_column, data.score_column, data.language_columns,
                                       samples.samples, samples.sample_chars)
    page = render_html(data)
    if path is None:
        layout = OutputLayout(output)
        path, json_path = layout.path(REPORT_HTML), layout.path(REPORT_JSON)
    else:
        json_path = path[: -len(".html")] + ".json" if path.endswith(".html") else path + ".json"
    # The files to open: the paths asked for, or a part file where a Connect client cannot rename (spark/storage.py).
    page_file, json_file = write_text(spark, path, page), write_text(spark, json_path, data.to_json())
    log.info("report: %s", page_file)
    for w in data.warnings:
        log.warning("report: %s: %s", w["language"], "; ".join(w["reasons"]))
    return {"report": page_file, "report_json": json_file, "languages": data.totals["languages"],
            "documents": data.totals["documents"], "bytes": len(page.encode("utf-8")),
            "warnings": [f"{w['language']}: {'; '.join(w['reasons'])}" for w in data.warnings]}
