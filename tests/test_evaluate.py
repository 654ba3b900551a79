"""Metrics, the human-label rule, judge ranking and the report formats."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from spark_jql.method import evaluate as ev

from .conftest import shared_file


@pytest.mark.parametrize("ratings, label", [
    ([1, 1, 3], 1.0), ([1, 2], 1.5), ([0, 2, 2, 4, 4], 3.0), ([3], 3.0), (4, 4.0), (2.5, 2.5),
    ([], math.nan), (None, math.nan), ([None, 2], 2.0), (np.array([5, 5, 0]), 5.0),
])
def test_reduce_ratings(ratings, label):
    got = ev.reduce_ratings(ratings)
    assert (math.isnan(got) and math.isnan(label)) or got == label


def test_metrics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 300).astype(float)  # many ties, as real 0-5 labels
    pred = truth + rng.normal(0, 1.5, 300)
    pred[::7] = np.round(pred[::7])
    m = ev.regression_metrics(pred, truth)
    assert m["documents"] == 300
    assert m["spearman"] == pytest.approx(stats.spearmanr(pred, truth).statistic, abs=1e-12)
    assert m["pearson"] == pytest.approx(stats.pearsonr(pred, truth).statistic, abs=1e-12)
    assert m["mse"] == pytest.approx(float(np.mean((pred - truth) ** 2)))
    # non-finite pairs are left out; undefined correlations are None (valid JSON)
    pred[:10] = np.nan
    assert ev.regression_metrics(pred, truth)["documents"] == 290
    assert ev.regression_metrics(np.ones(5), np.arange(5.0))["spearman"] is None
    assert ev.regression_metrics([1.0], [2.0]) == {"documents": 1, "spearman": None, "pearson": None, "mse": 1.0}


def _frame(n=240, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, n)
    langs = np.array(["deu", "fra", "spa"])[np.arange(n) % 3]
    noise = {"deu": 0.3, "fra": 3.0, "spa": 1.0}
    return pd.DataFrame({
        "human": [[int(t)] * 2 + [int(rng.integers(0, 6))] for t in truth],  # majority = t
        "metadata": [{"language": l} for l in langs],
        "score_good": truth + rng.normal(0, 0.3, n),
        "score_bad": rng.normal(0, 1, n),
        "jql_score": truth + np.array([noise[l] for l in langs]) * rng.normal(0, 1, n),
        "judge_llama": truth + rng.normal(0, 0.5, n),
        "judge_gemma": truth + rng.normal(0, 2.0, n),
        "judge_noise": rng.normal(0, 1, n),
    })


def test_evaluate_overall_and_per_language():
    frame = _frame()
    frame.loc[0, "human"] = None  # unlabelled: not counted
    report = ev.evaluate(frame, "human", language="metadata.language")
    assert report["predictions"] == ["score_good", "score_bad", "jql_score"]
    assert report["documents"] == 240 and report["labelled_documents"] == 239
    assert report["overall"]["score_good"]["documents"] == 239
    assert report["overall"]["score_good"]["spearman"] > 0.9 > abs(report["overall"]["score_bad"]["spearman"])
    assert sorted(report["per_language"]) == ["deu", "fra", "spa"]
    assert sum(report["per_language"][l]["jql_score"]["documents"] for l in "deu fra spa".split()) == 239
    per = {l: report["per_language"][l]["jql_score"]["spearman"] for l in report["per_language"]}
    assert per["deu"] > per["spa"] > per["fra"]
    json.loads(ev.to_json(report))
    table = ev.format_report(report)
    assert "majority vote" in table and "deu" in table and "score_good" in table
    assert ev.evaluate(frame, "human", ["score_good"], constant_language="en")["per_language"].keys() == {"en"}
    with pytest.raises(Exception, match="nope"):
        ev.evaluate(frame, "nope")


def test_rank_judges_per_language():
    ranking = ev.rank_judges(_frame(), "human", ["judge_noise", "judge_gemma", "judge_llama"], language="metadata.language")
    assert [r["judge"] for r in ranking["overall"]] == ["judge_llama", "judge_gemma", "judge_noise"]
    for lang, ordered in ranking["per_language"].items():
        assert ordered[0]["judge"] == "judge_llama" and ordered[0]["documents"] == 80
    assert "judge_llama" in ev.format_ranking(ranking)


def test_cli_evaluate_and_rank_judges(tmp_path, capsys):
    from spark_jql.cli import main

    path = tmp_path / "scored.parquet"
    _frame().to_parquet(path)
    assert main(["evaluate", "--input", str(path), "--label", "human", "--language", "metadata.language",
                 "--output", str(tmp_path / "eval.json")]) == 0
    assert "score_good" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert set(report["per_language"]) == {"deu", "fra", "spa"}
    assert main(["rank-judges", "--input", str(path), "--label", "human", "--output", str(tmp_path / "rank.json")]) == 0
    ranking = json.loads((tmp_path / "rank.json").read_text())
    assert ranking["overall"][0]["judge"] == "judge_llama" and len(ranking["overall"]) == 3
    assert main(["evaluate", "--input", str(path), "--label", "missing"]) == 2


def test_human_ground_truth_file():
    """The real 511 English ratings: read, reduce the rating lists, count per language."""
    frame = ev.read_table(shared_file("edu_human_annotations_en_511.jsonl"))
    frame["score_length"] = frame["text"].str.len().astype(float)  # a stand-in prediction
    report = ev.evaluate(frame, "scores", ["score_length"], language="metadata.language")
    assert report["labelled_documents"] == 511
    assert report["per_language"]["en"]["score_length"]["documents"] == 511
    assert -1 <= report["overall"]["score_length"]["spearman"] <= 1
