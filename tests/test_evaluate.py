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
    ranking = ev.rank_judges(_frame(), "human", ["judge_noise", "judge_gemma", "judge_llama"], language="metadata.language",
                             resamples=200)
    assert [r["judge"] for r in ranking["overall"]["judges"]] == ["judge_llama", "judge_gemma", "judge_noise"]
    for lang, block in ranking["per_language"].items():
        assert block["judges"][0]["judge"] == "judge_llama" and block["judges"][0]["documents"] == 80
        assert block["common_documents"] == 80
    text = ev.format_ranking(ranking)
    assert "judge_llama" in text and "Spearman per language" in text and "mean" in text


def _abstention_frame(n=400, seed=3) -> tuple[pd.DataFrame, np.ndarray]:
    """Three judges that answer everything (good > fair > worst) and ``worst_picky``: worst, silent on its worst half."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, n).astype(float)
    worst = truth + rng.normal(0, 1.8, n)
    picky = worst.copy()
    picky[np.argsort(-np.abs(worst - truth))[: n // 2]] = np.nan
    frame = pd.DataFrame({"human": truth, "judge_good": truth + rng.normal(0, 0.8, n), "judge_fair": truth + rng.normal(0, 1.1, n),
                          "judge_worst": worst, "judge_picky": pd.array(picky)})
    return frame, truth


def test_abstaining_judge_is_flagged_and_the_others_ranked_on_their_common_documents():
    """The audit's case: the worst judge, abstaining on its worst half, must not rank first (nor rank at all)."""
    frame, truth = _abstention_frame()
    judges = ["judge_picky", "judge_worst", "judge_fair", "judge_good"]
    own = {j: ev.regression_metrics(ev.as_numbers(frame[j], j), truth)["spearman"] for j in judges}
    assert own["judge_picky"] > own["judge_good"] > own["judge_fair"] > own["judge_worst"]  # naive ranking: picky first
    ranking = ev.rank_judges(frame, "human", judges, resamples=100)
    block = ranking["overall"]
    assert [r["judge"] for r in block["judges"]] == ["judge_good", "judge_fair", "judge_worst"]
    assert [r["rank"] for r in block["judges"]] == [1, 2, 3]
    assert block["common_documents"] == len(frame)  # the flagged judge's gaps take nothing away
    for r in block["judges"]:
        assert r["spearman"] == pytest.approx(own[r["judge"]]) and r["coverage"] == 1.0 and r["spearman_ci"]
    [picky] = block["flagged"]
    assert picky["judge"] == "judge_picky" and picky["coverage"] == 0.5 and "min_coverage 0.9" in picky["flag"]
    assert picky["spearman_own"] == pytest.approx(own["judge_picky"]) and "rank" not in picky
    text = ev.format_ranking(ranking)
    assert "flagged" in text and "coverage 0.5 < min_coverage 0.9" in text and "ranked: coverage >= 0.9" in text
    # a stated lower minimum ranks it, everyone on the half all four answered (where picky and worst agree)
    loose = ev.rank_judges(frame, "human", judges, resamples=0, min_coverage=0.5)["overall"]
    assert loose["common_documents"] == len(frame) // 2 and not loose["flagged"]
    rows = {r["judge"]: r for r in loose["judges"]}
    assert rows["judge_picky"]["spearman"] == rows["judge_worst"]["spearman"] and rows["judge_good"]["documents"] == 200
    with pytest.raises(ev.InputError, match="min-coverage"):
        ev.rank_judges(frame, "human", judges, min_coverage=1.5)


def test_a_judge_silent_in_one_language_never_blanks_the_others():
    frame = _frame()
    langs = frame["metadata"].map(lambda m: m["language"])
    frame["judge_gemma"] = frame["judge_gemma"].where(langs != "fra")  # no answer at all in French
    full = ev.rank_judges(_frame(), "human", ["judge_noise", "judge_llama"], language="metadata.language", resamples=0)
    ranking = ev.rank_judges(frame, "human", ["judge_noise", "judge_gemma", "judge_llama"], language="metadata.language",
                             resamples=0, min_coverage=0.6)  # 2/3 overall would pass: the French gap flags it
    fra = ranking["per_language"]["fra"]
    assert [r["judge"] for r in fra["judges"]] == ["judge_llama", "judge_noise"] and fra["common_documents"] == 80
    assert fra["flagged"][0]["judge"] == "judge_gemma" and fra["flagged"][0]["coverage"] == 0.0
    for lang in ("deu", "spa"):  # ranked where it answered
        assert [r["judge"] for r in ranking["per_language"][lang]["judges"]] == ["judge_llama", "judge_gemma", "judge_noise"]
    overall = ranking["overall"]  # flagged overall (not in every language), the others on all 240 documents
    assert overall["common_documents"] == 240 and [r["judge"] for r in overall["judges"]] == ["judge_llama", "judge_noise"]
    assert "in language 'fra'" in overall["flagged"][0]["flag"]
    for r, f in zip(overall["judges"], full["overall"]["judges"]):
        assert r["spearman"] == f["spearman"]  # exactly the results without the silent judge
    table = ev.format_ranking(ranking).split("Spearman per language")[1]
    fra_row = next(line for line in table.splitlines() if line.startswith("fra"))
    assert fra_row.split()[1] != "-" and "-" in fra_row.split()  # llama's value shown, gemma's cell flagged


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 400).astype(float)
    pred = truth + rng.normal(0, 1.5, 400)
    a = ev.regression_metrics(pred, truth, resamples=300, seed=1)
    assert a == ev.regression_metrics(pred, truth, resamples=300, seed=1)
    assert a != ev.regression_metrics(pred, truth, resamples=300, seed=2)
    for key in ("spearman", "pearson", "mse"):
        low, high = a[f"{key}_ci"]
        assert low < a[key] < high
    wide = ev.regression_metrics(pred[:40], truth[:40], resamples=300, seed=1)["spearman_ci"]
    assert wide[1] - wide[0] > a["spearman_ci"][1] - a["spearman_ci"][0]  # fewer documents, wider interval
    assert ev.regression_metrics([1.0], [2.0], resamples=10)["spearman_ci"] is None


@pytest.mark.parametrize("column, values, fragment", [
    ("human", ["12", "3", None], "'12'"),
    ("human", [[1, "2"], [3], None], "'2'"),
    ("human", [True, False, True], "bool"),
    ("judge_a", ["1", "2", "3"], "'1'"),
])
def test_text_labels_and_predictions_are_errors_naming_the_column(column, values, fragment):
    frame = pd.DataFrame({"human": [1.0, 2.0, 3.0], "judge_a": [1.0, 2.0, 3.0]})
    frame[column] = values
    with pytest.raises(ev.InputError, match=rf"column '{column}' must hold numbers.*{fragment}"):
        ev.rank_judges(frame, "human", ["judge_a"], resamples=0)


def test_numbers_of_every_type_read_as_numbers():
    assert ev.as_labels(pd.Series([12, None], dtype="Int32"), "x").tolist()[0] == 12.0
    assert ev.as_labels([12, [4, 4, 1], np.int64(3), None], "x")[:3].tolist() == [12.0, 4.0, 3.0]
    assert np.isnan(ev.as_numbers(pd.Series([1, None], dtype="Int8"), "x")[1])


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
    assert ranking["min_coverage"] == 0.9
    assert main(["rank-judges", "--input", str(path), "--label", "human", "--min-coverage", "2"]) == 2
    assert "--min-coverage must be in [0, 1], got 2.0" in capsys.readouterr().err
    assert ranking["overall"]["judges"][0]["judge"] == "judge_llama" and len(ranking["overall"]["judges"]) == 3
    assert ranking["overall"]["judges"][0]["spearman_ci"] is not None
    assert main(["evaluate", "--input", str(path), "--label", "missing"]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--input", str(path), "--label", "human", "--bootstrap", "0"]) == 0
    assert "[" not in capsys.readouterr().out.split("\n", 2)[2]  # no intervals asked, none shown


def test_human_ground_truth_file():
    """The real 511 English ratings: read, reduce the rating lists, count per language."""
    frame = ev.read_table(shared_file("edu_human_annotations_en_511.jsonl"))
    frame["score_length"] = frame["text"].str.len().astype(float)  # a stand-in prediction
    report = ev.evaluate(frame, "scores", ["score_length"], language="metadata.language")
    assert report["labelled_documents"] == 511
    assert report["per_language"]["en"]["score_length"]["documents"] == 511
    assert -1 <= report["overall"]["score_length"]["spearman"] <= 1
