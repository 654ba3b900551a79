"""The report flags languages whose score distribution cannot rank documents (no Spark: from collected data)."""

from __future__ import annotations

from spark_jql.report.data import Histogram, LanguageRow, ReportData, distribution_warnings


def _lang(label: str, counts: list[int], thresholds: dict[str, float], fallback: bool = False) -> LanguageRow:
    return LanguageRow(key={"language": label}, label=label, documents=sum(counts), scored=sum(counts), tokens=0,
                       truncated=0, thresholds=thresholds, fallback=fallback, histogram=Histogram(0.0, 5.0, counts))


def _data(*languages: LanguageRow) -> ReportData:
    return ReportData(output="o", score_column="jql_score", heads=[], quantiles=[0.6, 0.7], filter_quantile=0.6,
                      language_columns=["language"], bins=40, score_range=(0.0, 5.0), totals={},
                      languages=list(languages), head_histograms={}, correlations={}, global_thresholds={}, summary={})


def test_near_constant_and_equal_quantiles_are_flagged_spread_ones_are_not():
    spread = [3] * 40  # scores over the whole 0-5 range
    greek = [0] * 24 + [20, 20, 12] + [0] * 13  # 52 documents between 3.0 and 3.375 (bins of 0.125)
    warnings = distribution_warnings(_data(
        _lang("deu", spread, {"0.6": 3.0, "0.7": 3.5}),
        _lang("ell", greek, {"0.6": 3.1, "0.7": 3.12}),
        _lang("fin", spread, {"0.6": 2.0, "0.7": 2.05}),  # wide scores, but the two cuts within one bin (0.125)
    ))
    by_language = {w["language"]: w["reasons"] for w in warnings}
    assert set(by_language) == {"ell", "fin"}
    assert any("near-constant scores: all 52 scored documents between 3.00 and 3.38" in r for r in by_language["ell"])
    assert any("q0.6 = q0.7 within noise" in r for r in by_language["ell"])
    assert by_language["fin"] == ["q0.6 = q0.7 within noise (2.000 vs 2.050, less than one bin of 0.125)"]


def test_global_thresholds_of_small_languages_are_not_blamed_on_them():
    warnings = distribution_warnings(_data(_lang("xho", [1] * 40, {"0.6": 2.0, "0.7": 2.0}, fallback=True)))
    assert warnings == []


def test_the_page_shows_the_warning():
    from spark_jql.report.page import render_html

    ell = _lang("ell", [0] * 24 + [52] + [0] * 15, {"0.6": 3.1, "0.7": 3.1})
    ell.kept_documents, ell.kept_tokens = {"0.6": 20, "0.7": 10}, {"0.6": 0, "0.7": 0}
    data = _data(ell)
    data.totals = {"documents": 52, "scored": 52, "tokens": 0, "truncated": 0, "languages": 1,
                   "kept_documents": {"0.6": 20, "0.7": 10}, "kept_tokens": {"0.6": 0, "0.7": 0}}
    data.global_thresholds = {"0.6": 3.1, "0.7": 3.1}
    data.head_histograms = {"jql_score": Histogram(0.0, 5.0, [0] * 24 + [52] + [0] * 15)}
    data.correlations = {"jql_score": {"jql_score": 1.0}}
    data.warnings = distribution_warnings(data)
    page = render_html(data)
    assert 'class="warn"' in page and "Warning: 1 language(s) with a degenerate score distribution" in page
    assert "<b>ell</b> (52 documents): near-constant scores" in page
