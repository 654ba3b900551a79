"""A NaN score (Spark 3.5 keeps NaN from pandas; 4.x gives null) is "no score" everywhere: thresholds, filter, report."""

from __future__ import annotations

import math

from spark_jql import schema
from spark_jql.config import ColumnsConfig, ThresholdConfig
from spark_jql.report import collect_report_data
from spark_jql.spark.api import apply_thresholds, compute_thresholds

COLUMNS = ColumnsConfig(language=["language"])


def test_nan_scores_count_as_unscored(spark, tmp_path):
    rows = [(f"d{i}", "deu", float(i) / 10, float(i) / 10, 100) for i in range(30)]
    rows += [("nan", "deu", math.nan, math.nan, 50), ("null", "deu", None, None, 0), ("inf", "deu", 7.0, math.inf, 10)]
    stats = spark.createDataFrame(rows, f"id string, language string, score_A float, {schema.AGGREGATE} float, {schema.TOKENS} int")
    assert stats.where("id = 'nan'").first()[schema.AGGREGATE] != stats.where("id = 'nan'").first()[schema.AGGREGATE]  # NaN kept

    finite = stats.where("id like 'd%'")
    thr = compute_thresholds(stats, ThresholdConfig(quantiles=[0.5], min_docs=5), COLUMNS)
    ref = compute_thresholds(finite.union(stats.where("id = 'inf'")), ThresholdConfig(quantiles=[0.5], min_docs=5), COLUMNS)
    assert thr.global_thresholds == ref.global_thresholds and thr.global_documents == 31  # NaN and null not counted
    assert all(math.isfinite(v) for v in thr.global_thresholds.values())

    kept, dropped = apply_thresholds(stats, thr, quantile=0.5, columns=COLUMNS)
    reasons = {r["id"]: r[schema.DROP_REASON] for r in dropped.collect()}
    assert reasons["nan"] == reasons["null"] == "no_score"
    assert kept.count() + dropped.count() == stats.count()

    stats.write.parquet(str(tmp_path / "stats"))
    (tmp_path / "thresholds.json").write_text(thr.to_json())
    data = collect_report_data(spark, str(tmp_path), bins=10)
    lo, hi = data.score_range
    assert math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 and hi >= 2.9
    assert data.totals["documents"] == 33 and data.totals["scored"] == 31  # as thresholds: NaN and null are unscored
    assert data.languages[0].histogram.counts[-1] >= 1  # the infinite score sits in the top bin
    assert sum(data.head_histograms["A"].counts) == 31
