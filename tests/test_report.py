"""The report stage: Spark aggregates of stats/ + thresholds.json -> one self-contained HTML page."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from spark_jql.config import ColumnsConfig, ThresholdConfig
from spark_jql.errors import InputError
from spark_jql.report import collect_report_data, render_html, write_report
from spark_jql.spark.api import compute_thresholds

HEADS = ["A", "B", "C"]


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory):
    """A fake finished run: stats/ (no text), thresholds.json, summary.json."""
    rng = np.random.default_rng(0)
    rows = []
    for lang, script, n, shift in [("deu", "Latn", 300, 0.0), ("rus", "Cyrl", 200, 0.5), ("tiny", "Latn", 20, -0.5)]:
        base = rng.normal(2.0 + shift, 0.6, n)
        heads = np.stack([base + rng.normal(0, s, n) for s in (0.1, 0.3, 0.6)], axis=1)
        for i in range(n):
            rows.append({"id": f"{lang}{i}", "language": lang, "language_script": script,
                         **{f"score_{h}": float(heads[i, j]) for j, h in enumerate(HEADS)},
                         "jql_score": float(heads[i].mean()), "jql_tokens": int(rng.integers(50, 2000)),
                         "jql_truncated": bool(i % 50 == 0)})
    rows.append({"id": "empty", "language": "deu", "language_script": "Latn", **{f"score_{h}": None for h in HEADS},
                 "jql_score": None, "jql_tokens": 0, "jql_truncated": False})
    pdf = pd.DataFrame(rows)
    out = tmp_path_factory.mktemp("run")
    df = spark.createDataFrame(pdf)
    df = df.withColumn("jql_score", df["jql_score"].cast("float")).withColumn("jql_tokens", df["jql_tokens"].cast("int"))
    df.write.parquet(str(out / "stats"))
    cols = ColumnsConfig(language=["language", "language_script"])
    thr = compute_thresholds(spark.read.parquet(str(out / "stats")), ThresholdConfig(quantiles=[0.6, 0.7], min_docs=50), cols)
    (out / "thresholds.json").write_text(thr.to_json())
    (out / "summary.json").write_text(json.dumps({"annotate": {"input_rows": len(pdf), "scored_rows": len(pdf), "seconds": 12.5,
                                                               "docs_per_second": 41.7, "scorer_builds": 2},
                                                  "filter": {"quantile": 0.6, "kept_rows": 1, "dropped_by_reason": {}}}))
    return out, pdf, thr


@pytest.fixture(scope="module")
def data(spark, run_dir):
    return collect_report_data(spark, str(run_dir[0]), bins=20)


def test_numbers_match_a_direct_computation(run_dir, data):
    out, pdf, thr = run_dir
    assert data.heads == HEADS and data.language_columns == ["language", "language_script"]
    assert data.totals["documents"] == len(pdf) and data.totals["scored"] == len(pdf) - 1
    assert data.totals["tokens"] == int(pdf["jql_tokens"].sum())
    assert data.totals["truncated"] == int(pdf["jql_truncated"].sum())
    by = {x.key["language"]: x for x in data.languages}
    assert [x.key["language"] for x in data.languages] == ["deu", "rus", "tiny"]  # largest first
    assert by["tiny"].fallback and not by["deu"].fallback
    for lang, row in by.items():
        sub = pdf[pdf["language"] == lang]
        for q in (0.6, 0.7):
            t = thr.threshold({"language": lang, "language_script": sub["language_script"].iloc[0]}, q)
            keep = sub["jql_score"].astype("float32") >= np.float32(t)
            assert row.kept_documents[repr(q)] == int(keep.sum())
            assert row.kept_tokens[repr(q)] == int(sub.loc[keep, "jql_tokens"].sum())
        assert sum(row.histogram.counts) == int(sub["jql_score"].notna().sum())
    for name, h in data.head_histograms.items():
        assert sum(h.counts) == len(pdf) - 1, name
    valid = pdf.dropna(subset=["jql_score"])
    want = np.corrcoef(valid["score_A"], valid["score_C"])[0, 1]
    assert data.correlations["A"]["C"] == pytest.approx(want, abs=1e-4)
    assert data.correlations["C"]["A"] == data.correlations["A"]["C"] and data.correlations["B"]["B"] == 1.0
    lo, hi = data.score_range  # every threshold line lies inside the plotted range
    assert all(lo <= v <= hi for e in thr.languages for v in e.thresholds.values())


def test_writes_self_contained_html_and_json(spark, run_dir):
    out, pdf, _ = run_dir
    result = write_report(spark, str(out), bins=30)
    page = (out / "report.html").read_text()
    assert result["report"] == str(out / "report.html") and result["languages"] == 3
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)) == 4
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened
    assert "token retention" in page and "41.7 docs/s" in page and "rus" in page
    data = json.loads((out / "report.json").read_text())
    assert data["totals"]["documents"] == len(pdf) and set(data["correlations"]) == {"A", "B", "C", "jql_score"}


def test_render_marks_the_chosen_quantile(data):
    from dataclasses import replace

    page = render_html(replace(data, filter_quantile=0.7))
    assert "filter keeps ≥ q0.7" in page and page.count("<tr") >= 4 + 12


def test_missing_run_is_a_clear_error(spark, tmp_path):
    with pytest.raises(InputError, match="run annotate first"):
        collect_report_data(spark, str(tmp_path))
