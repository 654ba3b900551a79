"""annotate keeps embeddings; score_embeddings rescores them with heads only, same columns, thresholds and filter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spark_jql import schema
from spark_jql.config import ScorerConfig
from spark_jql.errors import CheckpointError, InputError

from .conftest import shared_file

pytestmark = pytest.mark.spark
N_DOCS = 120


@pytest.fixture(scope="module")
def config(gte_bundle) -> ScorerConfig:
    embedder = {**gte_bundle["embedder"], "max_length": 256, "device": "cpu"}
    return ScorerConfig.model_validate({**gte_bundle, "embedder": embedder, "token_budget": 8192,
                                        "store_embedding": "bfloat16"})


@pytest.fixture(scope="module")
def annotated(spark, config, tmp_path_factory):
    """Real Spanish documents (two without text) annotated with kept bfloat16 embeddings, written as parquet."""
    from spark_jql.spark.api import annotate

    rows = [json.loads(line) for line in shared_file("fineweb2_spa_Latn_600.jsonl").read_text().splitlines()[:N_DOCS]]
    rows = [{"id": r["id"], "text": r["text"], "language": r["language"]} for r in rows]
    rows += [{"id": "empty", "text": "", "language": "spa"}, {"id": "null", "text": None, "language": "spa"}]
    df = spark.createDataFrame(rows, "id string, text string, language string").repartition(2)
    out = str(tmp_path_factory.mktemp("annotated") / "scored")
    annotate(df, config, arrow_batch_size=32).write.parquet(out)
    return spark.read.parquet(out)


def test_annotate_keeps_provenance_and_embeddings(annotated, config):
    field = annotated.schema[schema.EMBEDDING]
    meta = field.metadata[schema.PROVENANCE_KEY]  # survives the parquet round trip
    assert meta["encoding"] == "bfloat16" and meta["dim"] == 32 and meta["pooling"] == "cls"
    assert meta["embedder"] == config.embedder.model and meta["max_length"] == 256
    assert annotated.schema[schema.AGGREGATE].metadata[schema.PROVENANCE_KEY]["heads"] == [h.name for h in config.heads]
    sizes = {r[0] for r in annotated.where("text IS NOT NULL AND text != ''").selectExpr(f"length({schema.EMBEDDING})").collect()}
    assert sizes == {64}  # 32 dimensions x 2 bytes
    assert annotated.where(f"{schema.EMBEDDING} IS NULL").count() == 2


def test_heads_only_scores_equal_scores_from_text(annotated, config):
    """bfloat16 keeps 8 significant bits: each stored component is within 2^-8 (0.4%) of the float32 one.
    Through these heads that moves a score by at most 0.005 (measured: 0.0004); float16 is tested in
    test_embedders.py with its own bound."""
    from spark_jql.spark.api import score_embeddings

    original = annotated.select("id", *[schema.head_column(h.name) for h in config.heads], schema.AGGREGATE)
    rescored = score_embeddings(annotated, config)
    assert rescored.columns == annotated.columns  # the same output columns, in the same place
    assert rescored.count() == annotated.count()
    a = original.toPandas().set_index("id").sort_index()
    b = rescored.select(*original.columns).toPandas().set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    for column in a.columns:
        assert np.array_equal(np.isnan(a[column]), np.isnan(b[column]))
        diff = np.nanmax(np.abs(a[column] - b[column]))
        assert diff < 0.005, (column, diff)


def test_thresholds_and_filter_from_rescored_embeddings(annotated, config):
    from spark_jql.spark.api import (
        apply_thresholds,
        compute_thresholds,
        score_embeddings,
    )

    scored = score_embeddings(annotated.drop(schema.TOKENS, schema.TRUNCATED), config)
    assert scored.where(f"{schema.TOKENS} IS NULL").count() == scored.count()  # unknown without the text
    thresholds = compute_thresholds(scored)
    kept, dropped = apply_thresholds(scored, thresholds, 0.6)
    assert kept.count() + dropped.count() == annotated.count()


def test_published_style_array_column_without_metadata(spark, annotated, config):
    """An array<float> column (embed's output, published datasets) is read as it is; widths checked per batch."""
    from pyspark.sql import functions as F

    from spark_jql.spark.api import score_embeddings

    as_arrays = annotated.select("id", F.array(*[F.lit(0.01 * i) for i in range(32)]).alias("emb"))
    out = score_embeddings(as_arrays, config, embedding_column="emb")
    assert out.where(f"{schema.AGGREGATE} IS NULL").count() == 0
    wrong = annotated.select("id", F.array(*[F.lit(0.1)] * 16).alias("emb"))
    with pytest.raises(Exception, match="has 16 dimensions, the heads take 32"):
        score_embeddings(wrong, config, embedding_column="emb").collect()


def test_mismatches_are_found_before_any_task(annotated, config, gte_bundle, tmp_path):
    from spark_jql.devtools.tiny_models import build_heads
    from spark_jql.spark.api import score_embeddings

    def with_heads(path) -> ScorerConfig:
        return ScorerConfig.model_validate({**config.model_dump(), "heads": [{"name": "h", "path": str(path)}]})

    wide = build_heads(tmp_path / "wide", 48, ["h"], hidden_dim=8)
    with pytest.raises(InputError, match="32-dimensional embeddings .* take 48-dimensional input"):
        score_embeddings(annotated, with_heads(wide["h"]))
    other = build_heads(tmp_path / "other", 32, ["h"], hidden_dim=8, embedder="jinaai/jina-embeddings-v3-hf")
    with pytest.raises(CheckpointError, match="trained on embeddings of 'jinaai/jina-embeddings-v3-hf'"):
        score_embeddings(annotated, with_heads(other["h"]))
    gte = ScorerConfig.model_validate({**config.model_dump(), "embedder": {"model": "Alibaba-NLP/gte-multilingual-base"}})
    with pytest.raises(InputError, match="was made by"):
        score_embeddings(annotated, gte)
    with pytest.raises(InputError, match="embedding column 'text' has type string"):
        score_embeddings(annotated, config, embedding_column="text")
    with pytest.raises(InputError, match="not found"):
        score_embeddings(annotated, config, embedding_column="nope")


def test_job_rescores_a_previous_runs_embeddings(spark, annotated, config, tmp_path, capsys):
    """The job with columns.embedding: a scored output in, new scores, thresholds and filter out; no encoder."""
    from spark_jql.cli import main

    source = tmp_path / "previous"
    annotated.write.parquet(str(source))
    out = tmp_path / "out"
    sets = {"io.input": json.dumps([str(source / "*.parquet")]), "io.output": str(out),
            "scorer.embedder.model": config.embedder.model, "scorer.heads": json.dumps([h.model_dump() for h in config.heads]),
            "columns.embedding": schema.EMBEDDING, "columns.constant_language": "spa", "thresholds.min_docs": "10"}
    assert main([a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + ["run"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotate"]["scored_rows"] == annotated.count()
    assert summary["filter"]["kept_rows"] + summary["filter"]["dropped_rows"] == annotated.count()
    rescored = spark.read.parquet(str(out / "scored")).select("id", schema.AGGREGATE).toPandas().set_index("id").sort_index()
    before = annotated.select("id", schema.AGGREGATE).toPandas().set_index("id").sort_index()
    assert np.nanmax(np.abs(rescored[schema.AGGREGATE] - before[schema.AGGREGATE])) < 0.005
