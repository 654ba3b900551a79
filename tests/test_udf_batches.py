"""The stage's batch size is applied inside each UDF: the scorer, the heads, the embedder and the judges never get more.

No Spark session: each UDF's Python function is called directly with Spark-sized batches and a recording fake.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_jql.config import JudgeConfig, ScorerConfig
from spark_jql.method.judge import JudgeResult
from spark_jql.spark import embed, judge, udf

SPARK_BATCHES = [23, 5, 14]  # rows per Arrow batch as Spark might hand them over
LIMIT = 7


def _texts() -> list[pd.Series]:
    return [pd.Series([f"doc {i}" for i in range(n)]) for n in SPARK_BATCHES]


def _chunks() -> list[int]:
    return [min(LIMIT, n - start) for n in SPARK_BATCHES for start in range(0, n, LIMIT)]


def test_rebatch_cuts_without_losing_or_reordering_rows():
    frames = [pd.DataFrame({"x": range(n)}) for n in SPARK_BATCHES]
    out = list(udf.rebatch(iter(frames), LIMIT))
    assert [len(f) for f in out] == _chunks()
    assert pd.concat(out)["x"].tolist() == pd.concat(frames)["x"].tolist()
    assert [len(f) for f in udf.rebatch(iter(frames), None)] == SPARK_BATCHES


@pytest.fixture
def config() -> ScorerConfig:
    return ScorerConfig.model_validate({"embedder": {"device": "cpu"}})


def test_score_udf_hands_the_scorer_at_most_n_rows(config, monkeypatch):
    seen = []

    class Scorer:
        def score_batches(self, batches):
            for batch in batches:
                seen.append(len(batch))
                yield pd.DataFrame({"jql_score": np.zeros(len(batch))})

    monkeypatch.setattr(udf, "get_scorer", lambda *args, **kwargs: Scorer())
    out = list(udf.make_score_udf(config, batch_size=LIMIT).func(iter(_texts())))
    assert seen == _chunks() and sum(map(len, out)) == sum(SPARK_BATCHES)


def test_heads_udf_hands_the_heads_at_most_n_rows(config, monkeypatch):
    seen = []

    class Heads:
        def score(self, values, encoding, problems=None):
            seen.append(len(values))
            return pd.DataFrame({"jql_score": np.zeros(len(values))})

    monkeypatch.setattr(udf, "get_head_scorer", lambda config_json: Heads())
    list(udf.make_heads_udf(config, "float32", batch_size=LIMIT).func(iter(_texts())))
    assert seen == _chunks()


def test_embed_udf_hands_the_embedder_at_most_n_rows(config, monkeypatch):
    seen = []

    class Embedder:
        def embed(self, texts):
            seen.append(len(texts))
            return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(embed, "get_scorer", lambda *args, **kwargs: Embedder())
    list(embed.make_embed_udf(config, batch_size=LIMIT).func(iter(_texts())))
    assert seen == _chunks()


def test_judge_udf_asks_at_most_n_rows_at_once(monkeypatch):
    seen = []

    class Panel:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def judge(self, texts, languages):
            seen.append(len(languages))
            return {name: [JudgeResult(3, "3", None, 1)] * len(languages) for name in texts}

    monkeypatch.setattr(judge, "JudgePanel", Panel)
    config = JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "http://localhost:1/v1", "model": "m"}]})
    frames = [pd.DataFrame({"lang": [None] * len(t), "t0": t}) for t in _texts()]
    list(judge.make_panel_udf(config, {}, {}, batch_size=LIMIT).func(iter(frames)))
    assert seen == _chunks()
