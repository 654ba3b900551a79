"""The Spark layer on a local session: annotate, thresholds and filter against direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spark_jql import schema
from spark_jql.config import ColumnsConfig, ScorerConfig, ThresholdConfig
from spark_jql.devtools.sample_data import generate_documents
from spark_jql.errors import InputError
from spark_jql.scoring.scorer import Scorer
from spark_jql.spark import annotate, apply_thresholds, compute_thresholds
from spark_jql.spark.inputs import read_input

from .conftest import shared_file

LANG2 = ColumnsConfig(language=["language", "language_script"])


@pytest.fixture(scope="module")
def scorer_config(gte_bundle) -> ScorerConfig:
    # A max_batch_docs no other test uses gives this module its own cache key, so the build
    # count below is not hidden by scorers that earlier tests left in the reused Python workers.
    return ScorerConfig.model_validate({**gte_bundle, "token_budget": 8192, "max_batch_docs": 4093})


@pytest.fixture(scope="module")
def direct_scorer(scorer_config) -> Scorer:
    return Scorer(scorer_config, device="cpu")


@pytest.fixture(scope="module")
def corpus(spark):
    docs = generate_documents(600, seed=3)
    docs += [
        {"id": "null-text", "text": None, "url": "", "language": "eng", "language_script": "Latn"},
        {"id": "empty", "text": "", "url": "", "language": "deu", "language_script": "Latn"},
        {"id": "blank", "text": " \n\t ", "url": "", "language": "spa", "language_script": "Latn"},
        {"id": "null-lang", "text": "Ein Satz ohne Sprache.", "url": "", "language": None, "language_script": None},
    ]
    return spark.createDataFrame(docs).repartition(8)


@pytest.fixture(scope="module")
def scored(spark, corpus, scorer_config):
    from pyspark.accumulators import AccumulatorParam

    class ListParam(AccumulatorParam):
        def zero(self, value):
            return []

        def addInPlace(self, a, b):
            return a + b

    sc = spark.sparkContext  # accumulators: a classic-session diagnostic
    builds, docs, pids = sc.accumulator(0), sc.accumulator(0), sc.accumulator([], ListParam())
    out = corpus.transform(
        annotate, scorer_config, arrow_batch_size=64, builds=builds, docs=docs, build_pids=pids
    ).cache()
    out.count()
    return out, builds, docs, pids


def test_annotate_keeps_rows_and_columns(corpus, scored, scorer_config):
    out = scored[0]
    assert out.count() == corpus.count()
    heads = [h.name for h in scorer_config.heads]
    assert out.columns == corpus.columns + schema.output_columns(heads)
    assert out.select("id").distinct().count() == corpus.count()
    original = {r["id"]: tuple(r) for r in corpus.collect()}
    for row in out.select(*corpus.columns).collect():
        assert tuple(row) == original[row["id"]]


def test_annotate_scores_equal_direct_scorer(scored, direct_scorer):
    out = scored[0]
    rows = out.orderBy("id").collect()
    expected = direct_scorer.score([r["text"] for r in rows])
    for col in direct_scorer.columns:
        got = [r[col] for r in rows]
        want = expected[col].tolist()
        for g, w in zip(got, want):
            if isinstance(w, float) and math.isnan(w):
                assert g is None, f"{col}: expected null, got {g}"
            elif isinstance(w, float):
                assert g == pytest.approx(w, abs=1e-5)
            else:
                assert g == w


def test_no_text_gives_null_scores(scored):
    out = scored[0]
    rows = {r["id"]: r for r in out.where("id in ('null-text', 'empty', 'blank')").collect()}
    assert set(rows) == {"null-text", "empty", "blank"}
    for r in rows.values():
        assert r[schema.AGGREGATE] is None and r[schema.TOKENS] == 0 and r[schema.TRUNCATED] is False


def test_model_built_once_per_python_worker(scored, corpus):
    _, builds, docs, pids = scored
    partitions = corpus.rdd.getNumPartitions()
    assert partitions >= 8
    # Each Python worker that ran a task built the scorer exactly once, and far fewer
    # workers than partitions did (local[2] keeps a small pool of reused workers).
    assert builds.value == len(pids.value) >= 1
    assert len(set(pids.value)) == len(pids.value), f"a worker built twice: {pids.value}"
    assert builds.value < partitions
    assert docs.value == corpus.count()


def test_thresholds_match_numpy_quantiles(scored):
    out = scored[0]
    cfg = ThresholdConfig(quantiles=[0.6, 0.7], relative_error=0.01, min_docs=40)
    th = compute_thresholds(out, cfg, LANG2)
    data = out.select("language", "language_script", schema.AGGREGATE).collect()
    by_lang: dict = {}
    for r in data:
        if r[schema.AGGREGATE] is not None:
            by_lang.setdefault((r["language"], r["language_script"]), []).append(r[schema.AGGREGATE])
    assert {tuple(e.language.values()) for e in th.languages} == set(by_lang)
    for entry in th.languages:
        values = np.sort(np.array(by_lang[tuple(entry.language.values())]))
        assert entry.documents == len(values)
        assert entry.fallback == (len(values) < cfg.min_docs)
        for q in cfg.quantiles:
            t = entry.own_thresholds[repr(q)]
            # percentile_approx's guarantee is on rank: |rank(t) - q*n| <= relative_error * n (+1 for discreteness)
            rank_lo, rank_hi = np.searchsorted(values, t, "left"), np.searchsorted(values, t, "right")
            target = q * len(values)
            slack = cfg.relative_error * len(values) + 1
            assert rank_lo - slack <= target <= rank_hi + slack, (entry.language, q, t)
            used = entry.thresholds[repr(q)]
            assert used == (th.global_thresholds[repr(q)] if entry.fallback else t)
    all_values = np.sort([v for vs in by_lang.values() for v in vs])
    assert th.global_documents == len(all_values)
    t = th.global_thresholds["0.6"]
    rank_lo, rank_hi = np.searchsorted(all_values, t, "left"), np.searchsorted(all_values, t, "right")
    slack = cfg.relative_error * len(all_values) + 1
    assert rank_lo - slack <= 0.6 * len(all_values) <= rank_hi + slack


def test_filter_keeps_exactly_scores_at_or_above_threshold(scored):
    out = scored[0]
    th = compute_thresholds(out, ThresholdConfig(min_docs=40), LANG2)
    kept, dropped = apply_thresholds(out, th, 0.6, LANG2)
    rows = out.collect()
    expected_kept = set()
    for r in rows:
        lang = {"language": r["language"], "language_script": r["language_script"]}
        score = r[schema.AGGREGATE]
        if score is not None and score >= th.threshold(lang, 0.6):
            expected_kept.add(r["id"])
    kept_ids = [r["id"] for r in kept.select("id").collect()]
    dropped_rows = dropped.select("id", schema.DROP_REASON).collect()
    assert len(kept_ids) == len(set(kept_ids)) and set(kept_ids) == expected_kept
    assert len(kept_ids) + len(dropped_rows) == len(rows)
    assert set(kept_ids).isdisjoint(r["id"] for r in dropped_rows)
    reasons = {r["id"]: r[schema.DROP_REASON] for r in dropped_rows}
    assert reasons["null-text"] == reasons["empty"] == reasons["blank"] == "no_score"
    assert set(reasons.values()) == {"no_score", "below_threshold"}
    # the null-language document was scored; it has its own (fallback) group, so it is accounted for
    assert "null-lang" in expected_kept or reasons["null-lang"] == "below_threshold"


def test_unknown_language_uses_global_threshold(spark, scored):
    out = scored[0]
    th = compute_thresholds(out, ThresholdConfig(min_docs=1), ColumnsConfig(language=["language"]))
    th.languages = [e for e in th.languages if e.language["language"] != "eng"]  # pretend eng was never seen
    kept, dropped = apply_thresholds(out, th, 0.7, ColumnsConfig(language=["language"]))
    eng = kept.union(dropped.drop(schema.DROP_REASON)).where("language = 'eng'")
    assert {r[schema.THRESHOLD] for r in eng.select(schema.THRESHOLD).collect()} == {th.global_threshold(0.7)}


def test_constant_language(scored):
    out = scored[0]
    cols = ColumnsConfig(constant_language="xx")
    th = compute_thresholds(out, ThresholdConfig(min_docs=1), cols)
    assert [e.language for e in th.languages] == [{"language": "xx"}]
    assert th.languages[0].thresholds == th.global_thresholds
    kept, dropped = apply_thresholds(out, th, 0.6, cols)
    assert kept.count() + dropped.count() == out.count()


def test_input_errors_name_the_problem(spark, corpus, scorer_config):
    with pytest.raises(InputError, match=r"'body' \(columns.text\) is not in the input; its columns are \['id'"):
        annotate(corpus, scorer_config, text_column="body")
    with pytest.raises(InputError, match="'n' has type bigint, not string"):
        annotate(spark.range(3).withColumnRenamed("id", "n"), scorer_config, text_column="n")
    with pytest.raises(InputError, match=r"language column\(s\) \['lang'\]"):
        compute_thresholds(corpus.withColumn(schema.AGGREGATE, corpus["url"]), None, ColumnsConfig(language="lang"))


def test_fineweb2_end_to_end(spark, gte_bundle):
    # Real FineWeb2 lengths run to ~94k characters; truncating at 1024 tokens keeps this fast on CPU.
    bundle = {**gte_bundle, "embedder": {**gte_bundle["embedder"], "max_length": 1024}}
    scorer_config = ScorerConfig.model_validate({**bundle, "token_budget": 8192})
    direct_scorer = Scorer(scorer_config, device="cpu")
    spa, deu = shared_file("fineweb2_spa_Latn_600.jsonl"), shared_file("fineweb2_deu_Latn_200.jsonl")
    df = read_input(spark, [str(spa), str(deu)])
    assert df.count() == 800
    out = annotate(df, scorer_config).cache()
    assert out.count() == 800
    assert set(df.columns) < set(out.columns)
    th = compute_thresholds(out, ThresholdConfig(min_docs=100), LANG2)
    assert {(e.language["language"], e.documents) for e in th.languages} == {("spa", 600), ("deu", 200)}
    sample = out.orderBy("url").limit(40).collect()
    direct = direct_scorer.score([r["text"] for r in sample])
    np.testing.assert_allclose([r[schema.AGGREGATE] for r in sample], direct[schema.AGGREGATE], atol=1e-5)
    assert [r[schema.TOKENS] for r in sample] == direct[schema.TOKENS].tolist()
    kept, dropped = apply_thresholds(out, th, 0.7, LANG2)
    assert kept.count() + dropped.count() == 800
    out.unpersist()


def test_annotate_leaves_the_session_arrow_batch_size_alone(spark, corpus, scorer_config):
    """The stage's batch size is cut inside its UDF (tests/test_udf_batches.py), never set on the caller's session."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    scored = annotate(corpus.limit(30), scorer_config, arrow_batch_size=int(before) // 2 + 3)
    assert len(scored.select(schema.AGGREGATE).collect()) == 30
    assert spark.conf.get(key) == before
