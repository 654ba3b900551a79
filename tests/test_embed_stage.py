"""The embed stage on real labelled text, and the loop embed -> train -> annotate with the trained heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from spark_jql import schema
from spark_jql.config import ScorerConfig, TrainConfig
from spark_jql.errors import InputError
from spark_jql.method.train import (
    load_embeddings,
    predict,
    save_trained_heads,
    train_heads,
)
from spark_jql.scoring.scorer import Scorer

from .conftest import shared_file

pytestmark = pytest.mark.spark
N_DOCS = 160


@pytest.fixture(scope="module")
def scorer_config(gte_bundle) -> ScorerConfig:
    embedder = {**gte_bundle["embedder"], "max_length": 256, "device": "cpu"}
    return ScorerConfig.model_validate({**gte_bundle, "embedder": embedder, "token_budget": 8192})


@pytest.fixture(scope="module")
def direct(scorer_config) -> Scorer:
    return Scorer(scorer_config, device="cpu")


@pytest.fixture(scope="module")
def labelled(spark, tmp_path_factory):
    """160 LLM-labelled English documents plus two without text, as JSON lines."""
    lines = shared_file("fineweb_edu_llm_annotated_train_1k.jsonl").read_text().split("\n")[:N_DOCS]  # not splitlines: texts hold U+2028
    extra = [{"id": "empty", "text": "", "scores": {"score": 2}}, {"id": "null", "text": None, "scores": {"score": 1}}]
    path = tmp_path_factory.mktemp("labelled") / "train.jsonl"
    path.write_text("\n".join(lines + [json.dumps(r) for r in extra]) + "\n")
    return path


@pytest.fixture(scope="module")
def embedded(spark, labelled, scorer_config, tmp_path_factory):
    """The CLI embed stage's output (read back with pyarrow, as train does)."""
    from spark_jql.cli import main

    out = tmp_path_factory.mktemp("emb") / "embeddings"
    bundle = tmp_path_factory.mktemp("cfg") / "job.yaml"
    bundle.write_text(yaml.safe_dump({"scorer": json.loads(scorer_config.model_dump_json()),
                                      "spark": {"arrow_batch_size": 64}}))
    rc = main(["-c", str(bundle), "--set", f"io.input=[{labelled}]", "--set", "columns.constant_language=en",
               "embed", "--output", str(out), "--label", "scores.score", "--label", "judge2=scores.score_transform_1"])
    assert rc == 0
    return out


def test_embed_schema_rows_and_nulls(spark, embedded):
    df = spark.read.parquet(str(embedded))  # committed unit by unit: jql_unit=N folders, as scored/
    assert df.columns == ["id", "language", "score", "judge2", "embedding", "jql_unit"]
    assert dict(df.dtypes)["embedding"] == "array<float>" and dict(df.dtypes)["id"] == "string"
    rows = {r["id"]: r for r in df.collect()}
    assert len(rows) == N_DOCS + 2
    assert rows["empty"]["embedding"] is None and rows["null"]["embedding"] is None and rows["empty"]["score"] == 2
    assert {r["language"] for r in rows.values()} == {"en"}
    assert all(len(r["embedding"]) == 32 for k, r in rows.items() if k not in ("empty", "null"))


def test_embeddings_equal_the_scorer(embedded, labelled, direct):
    data = load_embeddings(embedded, ["score"])
    assert data.embeddings.shape == (N_DOCS, 32)
    texts = {json.loads(l)["id"]: json.loads(l)["text"] for l in labelled.read_text().split("\n") if l}
    expected = direct.embed([texts[i] for i in data.ids])
    np.testing.assert_allclose(data.embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=1), 1.0, atol=1e-5)


def test_embed_api_with_language_columns_and_errors(spark, scorer_config):
    from spark_jql.spark.embed import embed

    df = spark.createDataFrame([("a", "Ein Text.", "deu", "Latn", [3, 3, 1])], "id string, text string, language string, script string, human array<int>").coalesce(1)
    row = embed(df, scorer_config, language=["language", "script"], labels=["human"]).collect()[0]
    assert row["language"] == "deu_Latn" and row["human"] == [3, 3, 1] and len(row["embedding"]) == 32
    with pytest.raises(InputError, match="clash"):
        embed(df, scorer_config, labels=["embedding=human"])
    with pytest.raises(InputError, match="nope"):
        embed(df, scorer_config, text_column="nope")


def test_annotate_with_trained_heads_equals_training_predictions(spark, embedded, labelled, scorer_config, tmp_path):
    """Train on the embed stage's output, save, load through ScorerConfig: same scores as the trainer's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_embeddings(embedded)
        cfg = TrainConfig(hidden_dim=1000, epochs=3, batch_size=64, val_fraction=0.2, balanced=True)
        results = train_heads(data.embeddings, {"Edu-A": data.labels["score"], "Edu-B": data.labels["judge2"]}, cfg)
    finally:
        torch.set_num_threads(threads)
    save_trained_heads(results, tmp_path, cfg, embedder=scorer_config.embedder.model)
    expected = {n: predict(r.head, data.embeddings) for n, r in results.items()}
    texts = {json.loads(l)["id"]: json.loads(l)["text"] for l in labelled.read_text().split("\n") if l}
    ordered = [texts[i] for i in data.ids]

    heads_yaml = yaml.safe_load((tmp_path / "heads.yaml").read_text())["heads"]  # safetensors
    ckpt_heads = [{"name": n, "path": str(tmp_path / f"{n}.ckpt")} for n in results]  # JQL Lightning layout
    for heads in (heads_yaml, ckpt_heads):
        trained = scorer_config.model_copy(update={"heads": ScorerConfig.model_validate({"heads": heads}).heads})
        scores = Scorer(trained, device="cpu").score(ordered)
        for name in results:
            np.testing.assert_allclose(scores[schema.head_column(name)].to_numpy(), expected[name], atol=1e-5)
        np.testing.assert_allclose(scores[schema.AGGREGATE].to_numpy(), (expected["Edu-A"] + expected["Edu-B"]) / 2, atol=1e-5)

    from spark_jql.spark import annotate

    df = spark.createDataFrame([(i, texts[i]) for i in data.ids[:40]], "id string, text string").coalesce(1)  # one model load
    trained = scorer_config.model_copy(update={"heads": ScorerConfig.model_validate({"heads": heads_yaml}).heads})
    got = {r["id"]: r for r in annotate(df, trained).collect()}
    for k, i in enumerate(data.ids[:40]):
        assert got[i][schema.head_column("Edu-A")] == pytest.approx(float(expected["Edu-A"][k]), abs=1e-5)
