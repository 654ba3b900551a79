"""report.samples: a few example documents per score band, escaped and cut; off by default. And the retention
plot's legend is never drawn over its bars."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from spark_jql.config import ColumnsConfig, ConfigError, ReportConfig, ThresholdConfig, load_config
from spark_jql.report import write_report
from spark_jql.report.samples import BANDS, collect_samples
from spark_jql.spark.api import compute_thresholds

SCRIPT = "<script>alert('x')</script> & a page that shows it as text"


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory):
    """A finished run with scored/ (text), stats/ (without), thresholds.json: 10 documents per band but the top one."""
    rng = np.random.default_rng(3)
    rows = []
    for band, n in enumerate([10, 10, 10, 10, 0]):
        for i in range(n):
            words = " ".join(f"w{band}{i}x{k}" for k in range(int(rng.integers(1, 200))))
            rows.append({"id": f"{band}-{i}", "text": f"doc {band}/{i}\nline two: {words}", "language": ["deu", "fra"][i % 2],
                         "jql_score": float(band + rng.uniform(0, 0.99)) - (1.0 if band == 0 and i == 0 else 0.0)})
    rows += [{"id": "script", "text": SCRIPT, "language": "deu", "jql_score": 4.6},
             {"id": "high", "text": "above five", "language": "fra", "jql_score": 5.3},
             {"id": "nan", "text": "unscored document", "language": "fra", "jql_score": float("nan")},
             {"id": "null", "text": None, "language": "fra", "jql_score": None}]
    pdf = pd.DataFrame(rows)
    pdf["jql_tokens"] = 10
    out = tmp_path_factory.mktemp("samples_run")
    scored = spark.createDataFrame(pdf)
    scored.write.parquet(str(out / "scored"))
    scored.drop("text").write.parquet(str(out / "stats"))
    thr = compute_thresholds(spark.read.parquet(str(out / "stats")), ThresholdConfig(quantiles=[0.6, 0.7], min_docs=5),
                             ColumnsConfig(language=["language"]))
    (out / "thresholds.json").write_text(thr.to_json())
    return out, pdf


def _sections(page: str) -> dict[str, list[tuple[str, str]]]:
    """Band label -> [(the line above the snippet, the snippet as a reader sees it)]."""
    found = {}
    for label, items in re.findall(r"<h3>jql_score ([^<]*)</h3><ol class=\"samples\">(.*?)</ol>", page, re.S):
        found[html.unescape(label)] = [(html.unescape(k), html.unescape(t)) for k, t in
                                       re.findall(r'<span class="k">(.*?)</span> <span class="t">(.*?)</span>', items, re.S)]
    return found


def test_the_page_shows_at_most_n_escaped_and_cut_examples_per_band(spark, run_dir, tmp_path):
    out, pdf = run_dir
    page_path = tmp_path / "report.html"
    write_report(spark, str(out), str(page_path), bins=10, samples=ReportConfig(samples=3, sample_chars=40))
    page = page_path.read_text()
    assert "Example documents per score band" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    sections = _sections(page)
    assert list(sections) == BANDS  # "4 and above": the script document and the one above 5
    texts = pdf.dropna(subset=["text"])
    for label, shown in sections.items():
        assert 1 <= len(shown) <= 3
        assert len(shown) == (2 if label == "4 and above" else 3)
        for key, text in shown:
            assert len(text) <= 40
            prefix = text[:-1] if text.endswith("…") else text
            (doc,) = [d for d in texts.itertuples() if d.text.startswith(prefix) and (text.endswith("…") or d.text == text)]
            assert key == f"{doc.jql_score:.2f} · {doc.language}"
            band = min(max(int(np.floor(doc.jql_score)), 0), 4)
            assert BANDS[band] == label
    assert any(t.endswith("…") and len(t) == 40 for shown in sections.values() for _, t in shown)  # long ones are cut
    assert "unscored document" not in page  # NaN and null scores have no band


def test_the_choice_is_the_same_on_every_run(spark, run_dir):
    out, _ = run_dir
    first = collect_samples(spark, str(out), "text", "jql_score", ["language"], 2, 30)
    assert first == collect_samples(spark, str(out), "text", "jql_score", ["language"], 2, 30)


def test_no_section_by_default(spark, run_dir, tmp_path):
    out, _ = run_dir
    write_report(spark, str(out), str(tmp_path / "r.html"), bins=10, samples=ReportConfig())
    page = (tmp_path / "r.html").read_text()
    assert "Example documents" not in page and "doc 1/" not in page and "samples" not in _sections(page)


def test_report_settings_are_validated():
    assert load_config().report == ReportConfig(samples=0, sample_chars=300)
    assert load_config(None, ["report.samples=5", "report.sample_chars=80"]).report.samples == 5
    for bad in ("report.samples=-1", "report.sample_chars=3", "report.sampels=2"):
        with pytest.raises(ConfigError, match="report.sam"):
            load_config(None, [bad])


def test_retention_legend_is_not_drawn_over_the_bars():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from spark_jql.report.data import Histogram, LanguageRow, ReportData
    from spark_jql.report.plots import retention_figure

    langs = [LanguageRow(key={"language": f"l{i}"}, label=f"l{i}", documents=10, scored=10, tokens=100, truncated=0,
                         thresholds={"0.6": 1.0}, fallback=False, kept_documents={"0.6": 10}, kept_tokens={"0.6": 100},
                         histogram=Histogram(0.0, 5.0, [10])) for i in range(12)]  # everything kept: full-height bars
    data = ReportData(output="o", score_column="jql_score", heads=[], quantiles=[0.6], filter_quantile=0.6,
                      language_columns=["language"], bins=1, score_range=(0.0, 5.0), totals={}, languages=langs,
                      head_histograms={}, correlations={}, global_thresholds={}, summary={})
    fig = retention_figure(data, 0.6)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert len(bars) == 24 and not any(legend.overlaps(b) for b in bars)
