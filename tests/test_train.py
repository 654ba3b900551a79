"""Head training on synthetic embeddings: signal recovery, reproducibility, formats. No Spark."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from spark_jql.config import ConfigError, ScorerConfig, TrainConfig, load_config
from spark_jql.method.evaluate import spearman
from spark_jql.method.train import (
    epoch_order,
    load_embeddings,
    predict,
    save_trained_heads,
    split_indices,
    train_heads,
)
from spark_jql.scoring.heads import HEAD_KEYS, load_head_file

FAST = dict(hidden_dim=64, epochs=15, learning_rate=3e-3, batch_size=128, val_fraction=0.2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one thread is faster and not disturbed by other processes on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n=1500, d=32, noise=0.5, seed=0):
    """L2-normalised vectors; labels 0-5 are a noisy, rounded, non-linear function of them (fixed across calls)."""
    w = np.random.default_rng(42).normal(size=(2, d))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    signal = x @ w[0] + 0.5 * np.abs(x @ w[1])
    scaled = np.clip(signal * 1.2 + 2.5, 0, 5)
    labels = np.clip(np.rint(scaled + rng.normal(0, noise, n)), 0, 5)
    return x, labels, signal


@pytest.mark.parametrize("balanced", [False, True])
def test_training_recovers_a_known_signal(balanced):
    x, labels, signal = synthetic()
    result = train_heads(x, {"judge": labels}, TrainConfig(**FAST, balanced=balanced))["judge"]
    assert result.validation["spearman"] > 0.6  # chance is 0
    assert result.train_documents == 1200 and result.validation_documents == 300
    fresh_x, fresh_labels, _ = synthetic(n=500, seed=99)  # unseen documents, same labelling function
    assert spearman(predict(result.head, fresh_x), fresh_labels) > 0.6


def test_training_is_reproducible_and_heads_are_independent():
    x, labels, _ = synthetic(n=600)
    noisy = np.where(np.random.default_rng(5).random(600) < 0.3, 5 - labels, labels)
    cfg = TrainConfig(**{**FAST, "epochs": 4})
    one = train_heads(x, {"a": labels}, cfg)["a"]
    two = train_heads(x, {"b": noisy, "a": labels}, cfg)
    for key in HEAD_KEYS:
        assert torch.equal(one.head.state_dict()[key], two["a"].head.state_dict()[key])
    assert [h["train_mse"] for h in one.history] == [h["train_mse"] for h in two["a"].history]
    other_seed = train_heads(x, {"a": labels}, cfg.model_copy(update={"seed": 1}))["a"]
    assert not torch.equal(one.head.w1, other_seed.head.w1)


def test_missing_labels_and_embeddings_are_left_out():
    x, labels, _ = synthetic(n=400)
    labels[:50] = np.nan
    x[50:60] = np.nan  # documents without text
    result = train_heads(x, {"a": labels}, TrainConfig(**{**FAST, "epochs": 2, "val_fraction": 0.25}))["a"]
    assert result.train_documents + result.validation_documents == 340
    assert np.isfinite(result.head.w1.numpy()).all()


def test_early_stopping_keeps_the_best_epoch():
    x, _, _ = synthetic(n=400)
    noise = np.random.default_rng(3).integers(0, 6, 400).astype(float)  # nothing to learn
    cfg = TrainConfig(**{**FAST, "epochs": 40, "early_stopping_patience": 2, "learning_rate": 1e-2})
    result = train_heads(x, {"a": noise}, cfg)["a"]
    rhos = [h["val_spearman"] for h in result.history]
    assert len(rhos) < 40
    assert result.best_epoch == int(np.argmax(rhos)) + 1 == len(rhos) - 2
    assert result.validation["spearman"] == pytest.approx(max(rhos))
    no_val = train_heads(x, {"a": noise}, cfg.model_copy(update={"val_fraction": 0.0, "epochs": 3}))["a"]
    assert no_val.best_epoch == 3 and no_val.validation is None and len(no_val.history) == 3


def test_balanced_epochs_and_split():
    labels = np.array([0.0] * 900 + [3.0] * 90 + [5.0] * 10)
    order = epoch_order(np.arange(1000), labels, True, np.random.default_rng(0))
    share = np.bincount(labels[order].astype(int), minlength=6)[[0, 3, 5]] / 1000
    assert np.allclose(share, 1 / 3, atol=0.05)
    assert sorted(epoch_order(np.arange(10), labels, False, np.random.default_rng(0))) == list(range(10))
    train, val = split_indices(100, 0.1, seed=7)
    assert len(val) == 10 and not set(train) & set(val) and len(train) + len(val) == 100
    assert np.array_equal(val, split_indices(100, 0.1, seed=7)[1])


class ReferenceHead(torch.nn.Module):
    """The JQL reference RegressionHead's layout: layer1 -> relu -> layer2 (Lightning omitted)."""

    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.layer1 = torch.nn.Linear(input_dim, hidden_dim)
        self.relu = torch.nn.ReLU()
        self.layer2 = torch.nn.Linear(hidden_dim, 1)

    def forward(self, x):
        return self.layer2(self.relu(self.layer1(x)))


def test_saved_formats_load_everywhere(tmp_path):
    x, labels, _ = synthetic(n=300)
    cfg = TrainConfig(**{**FAST, "epochs": 2})
    results = train_heads(x, {"Edu-Test": labels}, cfg, {"Edu-Test": "scores.score"})
    report = save_trained_heads(results, tmp_path, cfg, embedder="tiny-model")
    expected = predict(results["Edu-Test"].head, x)
    for suffix in (".safetensors", ".ckpt"):
        loaded = load_head_file(tmp_path / f"Edu-Test{suffix}", "Edu-Test")
        assert np.array_equal(predict(loaded, x), expected)
    ckpt = torch.load(tmp_path / "Edu-Test.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["input_dim"] == 32 and ckpt["hyper_parameters"]["hidden_dim"] == 64
    assert "pytorch-lightning_version" in ckpt  # Lightning's load_from_checkpoint needs it
    ref = ReferenceHead(**{k: ckpt["hyper_parameters"][k] for k in ("input_dim", "hidden_dim")})
    ref.load_state_dict(ckpt["state_dict"], strict=True)
    with torch.no_grad():
        assert np.allclose(ref(torch.from_numpy(x))[:, 0].numpy(), expected, atol=1e-6)
    meta = json.loads((tmp_path / "Edu-Test.json").read_text())
    assert meta["label"] == "scores.score" and meta["embedder"] == "tiny-model" and meta["train_config"]["seed"] == 0
    assert report["heads"]["Edu-Test"]["history"] and (tmp_path / "training_report.json").is_file()
    heads = yaml.safe_load((tmp_path / "heads.yaml").read_text())
    ScorerConfig.model_validate(heads)  # a valid scorer.heads section


def test_train_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="device"):
        load_config(None, ["device=gpu"], model=TrainConfig)
    with pytest.raises(ConfigError, match="epocs"):
        load_config(None, ["epocs=3"], model=TrainConfig)
    assert load_config(None, ["epochs=3", "balanced=true"], model=TrainConfig).balanced


def _write_embeddings(path, x, labels):
    rows = len(x)
    emb = [None if i == 0 else row.tolist() for i, row in enumerate(x)]  # first document had no text
    table = pa.table({
        "id": [str(i) for i in range(rows)], "language": ["en"] * rows,
        "score": labels, "human": [[int(v), int(v), 0] for v in labels],
        "embedding": pa.array(emb, type=pa.list_(pa.float32())),
    })
    path.mkdir()
    pq.write_table(table.slice(0, rows // 2), path / "part-0.parquet")
    pq.write_table(table.slice(rows // 2), path / "part-1.parquet")


def test_load_embeddings_and_cli_train(tmp_path, capsys):
    from spark_jql.cli import main

    x, labels, _ = synthetic(n=300)
    _write_embeddings(tmp_path / "emb", x, labels)
    data = load_embeddings(tmp_path / "emb")
    assert data.embeddings.shape == (299, 32) and data.embeddings.dtype == np.float32
    assert sorted(data.labels) == ["human", "score"] and data.ids[0] == "1"
    assert np.array_equal(data.labels["human"], labels[1:])
    rc = main(["train", "--embeddings", str(tmp_path / "emb"), "--label", "Edu-A=score", "--output", str(tmp_path / "heads"),
               "--train-set", "epochs=2", "--train-set", "hidden_dim=16", "--embedder", "tiny"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 299 and summary["heads"]["Edu-A"]["label"] == "score"
    assert load_head_file(tmp_path / "heads" / "Edu-A.ckpt", "Edu-A").hidden_dim == 16
    assert main(["train", "--embeddings", str(tmp_path / "emb"), "--label", "nope", "--output", str(tmp_path / "h2")]) == 2
    assert main(["train", "--embeddings", str(tmp_path / "emb"), "--label", "a b=score", "--output", str(tmp_path / "h3")]) == 2


def _write_set(path, x, labels, languages, row_group_size=64, files=2):
    table = pa.table({"id": [str(i) for i in range(len(x))], "language": languages, "score": labels,
                      "embedding": pa.array([r.tolist() for r in x], type=pa.list_(pa.float32()))})
    path.mkdir()
    step = math.ceil(len(x) / files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), path / f"part-{i}.parquet", row_group_size=row_group_size)


def test_streaming_training_from_parquet_with_validation_and_test_files(tmp_path):
    from spark_jql.method.train import train_from_parquet

    x, labels, _ = synthetic(n=900, seed=0)
    langs = np.array(["deu", "fra", "spa"])[np.arange(900) % 3]
    _write_set(tmp_path / "train", x[:600], labels[:600], langs[:600])
    _write_set(tmp_path / "val", x[600:750], labels[600:750], langs[600:750], files=1)
    _write_set(tmp_path / "test", x[750:], labels[750:], langs[750:], files=1)
    cfg = TrainConfig(**{**FAST, "epochs": 6, "shuffle_buffer": 100, "read_batch_rows": 32, "balanced": True})
    report = train_from_parquet(tmp_path / "train", tmp_path / "heads", {"Edu": "score"}, cfg,
                                validation=tmp_path / "val", test=tmp_path / "test", embedder="tiny")
    head = report["heads"]["Edu"]
    assert report["documents"] == {"train": 600, "validation": 150, "test": 150} and report["dim"] == 32
    assert head["train_documents"] == 600 and head["validation_documents"] == 150  # no random split with a file
    assert head["validation"]["spearman"] > 0.5 and head["test"]["spearman"] > 0.5
    assert set(head["test"]["per_language"]) == {"deu", "fra", "spa"}
    epoch = head["history"][0]
    assert set(epoch["val_per_language"]) == {"deu", "fra", "spa"}
    assert sum(m["documents"] for m in epoch["val_per_language"].values()) == 150
    assert {"spearman", "pearson", "mse"} <= set(epoch["val_per_language"]["deu"])
    saved = json.loads((tmp_path / "heads" / "training_report.json").read_text())
    assert saved["heads"]["Edu"]["test"]["documents"] == 150
    again = train_from_parquet(tmp_path / "train", tmp_path / "heads2", {"Edu": "score"}, cfg,
                               validation=tmp_path / "val", embedder="tiny")
    assert again["heads"]["Edu"]["history"][-1]["train_mse"] == head["history"][-1]["train_mse"]  # seeded


def test_streaming_matches_the_data_not_the_memory(tmp_path):
    """A shuffle buffer smaller than a row group and one bigger than the set learn the same signal."""
    from spark_jql.method.train import ParquetEmbeddings, train_heads

    x, labels, _ = synthetic(n=800)
    _write_set(tmp_path / "emb", x, labels, ["en"] * 800, row_group_size=50, files=3)
    source = ParquetEmbeddings(tmp_path / "emb", ["score"], read_batch_rows=16)
    assert source.n == 800 and source.dim == 32 and source.valid.all()
    seen = np.concatenate([idx for idx, _ in source.chunks(np.ones(800, bool), np.random.default_rng(0), 40)])
    assert sorted(seen.tolist()) == list(range(800))  # every row once per pass, in a shuffled order
    assert seen[:50].tolist() != list(range(50))
    for buffer in (30, 5000):
        cfg = TrainConfig(**{**FAST, "shuffle_buffer": buffer, "epochs": 8})
        result = train_heads(source, {"a": source.labels["score"]}, cfg)["a"]
        assert result.validation["spearman"] > 0.6 and result.train_documents == 640


def test_recipe_preset_and_new_settings():
    cfg = load_config(None, ["preset=jql"], model=TrainConfig)
    assert (cfg.optimizer, cfg.weight_decay, cfg.lr_schedule, cfg.learning_rate, cfg.batch_size, cfg.epochs,
            cfg.early_stopping_patience, cfg.precision) == ("adamw", 0.01, "cosine", 5e-4, 1024, 20, 5, "bf16")
    assert load_config(None, ["preset=jql", "epochs=3"], model=TrainConfig).epochs == 3  # explicit keys win
    assert TrainConfig().optimizer == "adam" and TrainConfig().precision == "float32"  # today's defaults
    with pytest.raises(ConfigError, match="preset"):
        load_config(None, ["preset=fineweb"], model=TrainConfig)
    x, labels, _ = synthetic(n=600)
    fast_recipe = TrainConfig(**{**FAST, "preset": "jql", "epochs": 6, "batch_size": 64, "learning_rate": 3e-3})
    assert fast_recipe.precision == "bf16" and fast_recipe.optimizer == "adamw"
    result = train_heads(x, {"a": labels}, fast_recipe)["a"]
    assert result.validation["spearman"] > 0.5
    # min_delta: an improvement smaller than it does not reset the patience
    noise = np.random.default_rng(3).integers(0, 6, 600).astype(float)
    strict = TrainConfig(**{**FAST, "epochs": 30, "early_stopping_patience": 1, "min_delta": 0.5})
    assert len(train_heads(x, {"a": noise}, strict)["a"].history) == 2


def test_bad_training_inputs_name_the_column(tmp_path):
    from spark_jql.errors import InputError
    from spark_jql.method.train import ParquetEmbeddings, train_from_parquet

    x, labels, _ = synthetic(n=60)
    emb = [r.tolist() for r in x]
    emb[40] = emb[40][:16]
    (tmp_path / "wide").mkdir()
    pq.write_table(pa.table({"score": labels, "embedding": emb}), tmp_path / "wide" / "p.parquet")
    with pytest.raises(InputError, match=r"column 'embedding' row 40 has 16 values, expected 32"):
        ParquetEmbeddings(tmp_path / "wide")
    (tmp_path / "text").mkdir()
    pq.write_table(pa.table({"score": [str(int(v)) + "2" for v in labels], "embedding": [r.tolist() for r in x]}),
                   tmp_path / "text" / "p.parquet")
    with pytest.raises(InputError, match=r"column 'score' must hold numbers.*'\d2'"):
        train_from_parquet(tmp_path / "text", tmp_path / "out", ["score"])
    _write_set(tmp_path / "ok", x, labels, ["en"] * 60, files=1)
    (tmp_path / "narrow").mkdir()
    pq.write_table(pa.table({"score": labels, "embedding": [r[:8].tolist() for r in x]}), tmp_path / "narrow" / "p.parquet")
    with pytest.raises(InputError, match=r"validation embeddings .*narrow have 8 values per row, the training set 32"):
        train_from_parquet(tmp_path / "ok", tmp_path / "out", ["score"], TrainConfig(**FAST), validation=tmp_path / "narrow")


def test_heads_record_the_embedder_embed_wrote_with_the_column(tmp_path):
    """An embed output carries its provenance in Spark's schema footer; train records embedder and pooling from it."""
    from spark_jql.method.train import SPARK_SCHEMA_KEY, train_from_parquet

    x, labels, _ = synthetic(n=200, seed=1)
    table = pa.table({"id": [str(i) for i in range(200)], "language": ["en"] * 200, "score": labels,
                      "embedding": pa.array([r.tolist() for r in x], type=pa.list_(pa.float32()))})
    provenance = {"embedder": "jinaai/jina-embeddings-v3", "pooling": "mean", "prefix": "", "layout": "jina-original"}
    spark_schema = {"type": "struct", "fields": [
        {"name": "embedding", "type": {"type": "array", "elementType": "float", "containsNull": True}, "nullable": True,
         "metadata": {"spark_jql": provenance}}]}
    (tmp_path / "emb").mkdir()
    pq.write_table(table.replace_schema_metadata({SPARK_SCHEMA_KEY: json.dumps(spark_schema)}),
                   tmp_path / "emb" / "part-0.parquet")
    report = train_from_parquet(tmp_path / "emb", tmp_path / "heads", {"Edu": "score"}, TrainConfig(**FAST))
    assert report["embedding_provenance"] == provenance
    head = load_head_file(tmp_path / "heads" / "Edu.ckpt", "Edu")
    assert (head.meta["embedder"], head.meta["pooling"]) == ("jinaai/jina-embeddings-v3", "mean")
    sidecar = json.loads((tmp_path / "heads" / "Edu.json").read_text())
    assert (sidecar["embedder"], sidecar["pooling"]) == ("jinaai/jina-embeddings-v3", "mean")
