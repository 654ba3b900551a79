"""The three JQL embedders as native transformers classes, pooling settings, head provenance, stored embeddings.

All offline, with tiny random models saved in each checkpoint's own layout.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from spark_jql.config import EmbedderConfig, ScorerConfig
from spark_jql.errors import CheckpointError, ModelNotAvailableError
from spark_jql.scoring import stored
from spark_jql.scoring.embedder import Embedder
from spark_jql.scoring.models import convert_new_config, provenance, resolve

TEXTS = ["Hola mundo, esto es una prueba.", "Das ist ein etwas längerer deutscher Satz über Wetter und Züge. " * 3, "x"]
LONG = "El tren llega tarde porque la nieve cubre las vías del norte. " * 120  # ~1,500 tokens


@pytest.fixture(scope="module")
def gte_new(tmp_path_factory):
    from spark_jql.devtools.tiny_models import build_original_gte

    return build_original_gte(tmp_path_factory.mktemp("gte_new"), seed=3)


@pytest.fixture(scope="module")
def jina(tmp_path_factory):
    from spark_jql.devtools.tiny_models import build_jina

    return build_jina(tmp_path_factory.mktemp("jina"), seed=4)


def ntk_inv_freq(theta: float, factor: float, head_dim: int) -> torch.Tensor:
    """gte-multilingual-base's own fixed-NTK frequencies, written out: 1 / (theta*f)^(2i/d) / f^(2/d)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    return (1.0 / (theta * factor) ** exponents / factor ** (2.0 / head_dim)).float()


def test_gte_new_loads_natively_with_the_original_ntk_frequencies(gte_new):
    directory, _ = gte_new
    assert json.loads((directory / "config.json").read_text())["model_type"] == "new"  # the original layout
    embedder = Embedder(EmbedderConfig(model=str(directory), device="cpu"))
    assert type(embedder.model).__name__ == "GteModel"
    assert embedder.config.pooling == "cls"
    rotary = embedder.model.rotary_emb
    expected = ntk_inv_freq(20000.0, 8.0, head_dim=8)
    torch.testing.assert_close(rotary.inv_freq, expected, rtol=1e-6, atol=0)
    # cos/sin at every position up to 8192 as the original computes them (float32 positions x frequencies)
    positions = torch.arange(8192)[None]
    cos, sin = rotary(torch.zeros(1, 1, dtype=torch.float32), positions)
    angles = positions[0, :, None].float() * expected[None]
    torch.testing.assert_close(cos[0], torch.cat([angles.cos(), angles.cos()], -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(sin[0], torch.cat([angles.sin(), angles.sin()], -1), atol=1e-5, rtol=0)


def test_gte_new_weights_and_rope_reproduce_the_original_model(gte_new):
    """The original's weights under the original's frequencies; a conversion that drops the NTK scaling is off."""
    directory, native = gte_new
    embedder = Embedder(EmbedderConfig(model=str(directory), device="cpu", max_length=2048))
    ids = embedder.tokenize([LONG]).ids
    assert len(ids[0]) > 1000
    converted = embedder.embed(ids)[0]
    input_ids = torch.tensor(ids)

    def cls_with(inv_freq: torch.Tensor) -> torch.Tensor:
        native.rotary_emb.inv_freq = inv_freq
        with torch.no_grad():
            cls = native(input_ids=input_ids).last_hidden_state[0, 0]
        return torch.nn.functional.normalize(cls, dim=-1)

    reference = cls_with(ntk_inv_freq(20000.0, 8.0, head_dim=8))
    naive = cls_with(ntk_inv_freq(20000.0, 1.0, head_dim=8))  # rope_theta 20000, scaling ignored
    assert float(converted @ reference) > 0.99999
    assert float(converted @ naive) < 0.999


def test_new_config_conversion_refuses_what_gte_model_cannot_compute():
    raw = {"model_type": "new", "hidden_size": 768, "num_attention_heads": 12, "rope_theta": 20000,
           "rope_scaling": {"type": "ntk", "factor": 8.0}}
    out = convert_new_config(raw)
    assert out["model_type"] == "gte" and "rope_scaling" not in out
    assert out["rope_parameters"] == {"rope_type": "linear", "rope_theta": 160000.0, "factor": 8.0 ** (2 / 64)}
    with pytest.raises(ModelNotAvailableError, match="logn_attention_scale"):
        convert_new_config({**raw, "logn_attention_scale": True})
    with pytest.raises(ModelNotAvailableError, match="fixed NTK"):
        convert_new_config({**raw, "rope_scaling": {"type": "ntk", "factor": 8.0, "mixed_b": 0.5}})


def _manual_jina(directory, task: str, texts: list[str]) -> torch.Tensor:
    """The -hf model by hand: base weights + scale * B @ A of the task's LoRA, mean over real tokens, L2."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, JinaEmbeddingsV3Model

    model = JinaEmbeddingsV3Model.from_pretrained(str(directory)).eval()
    adapter = json.loads((directory / task / "adapter_config.json").read_text())
    scale = adapter["lora_alpha"] / adapter["r"]
    lora = load_file(str(directory / task / "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    adapted = set()
    with torch.no_grad():
        for key, a in lora.items():
            if ".lora_A." in key:  # linear: W (out, in) += scale * B (out, r) @ A (r, in)
                b = lora[key.replace(".lora_A.", ".lora_B.")]
                target = key.split("base_model.model.", 1)[-1].replace(".lora_A.weight", ".weight")
                params[target] += scale * b @ a
            elif key.endswith(".lora_embedding_A"):  # embedding: W (vocab, d) += scale * (B (d, r) @ A (r, vocab))^T
                b = lora[key.replace("_A", "_B")]
                target = key.split("base_model.model.", 1)[-1].replace(".lora_embedding_A", ".weight")
                params[target] += scale * (b @ a).T
            else:
                continue
            adapted.add(target)
    assert "embeddings.word_embeddings.weight" in adapted and len(adapted) > 1  # both kinds are exercised
    tok = AutoTokenizer.from_pretrained(str(directory))
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_jina_v3_uses_the_text_matching_adapter_and_mean_pooling(jina):
    embedder = Embedder(EmbedderConfig(model=str(jina), device="cpu"))
    assert type(embedder.model).__name__ == "JinaEmbeddingsV3Model"
    assert (embedder.config.pooling, embedder.config.task_adapter) == ("mean", "text_matching")
    ours = embedder.embed(embedder.tokenize(TEXTS).ids)  # padded batch of unequal lengths
    torch.testing.assert_close(ours, _manual_jina(jina, "text_matching", TEXTS), atol=2e-5, rtol=0)
    other = Embedder(EmbedderConfig(model=str(jina), device="cpu", task_adapter="retrieval_query"))
    plain = Embedder(EmbedderConfig(model=str(jina), device="cpu", task_adapter=None))
    for different in (other, plain):
        cos = (ours * different.embed(different.tokenize(TEXTS).ids)).sum(-1)
        assert float(cos.min()) < 0.9999  # the adapter changes the embedding


def test_mean_pooling_ignores_padding(jina):
    embedder = Embedder(EmbedderConfig(model=str(jina), device="cpu"))
    alone = embedder.embed(embedder.tokenize(TEXTS[:1]).ids)
    batched = embedder.embed(embedder.tokenize(TEXTS).ids)[:1]
    torch.testing.assert_close(alone, batched, atol=2e-5, rtol=0)


def test_missing_adapter_folder_is_a_clear_error(jina):
    with pytest.raises(ModelNotAvailableError, match="no adapter folder"):
        Embedder(EmbedderConfig(model=str(jina), device="cpu", task_adapter="classification"))


def test_adapter_merge_runs_without_peft(jina):
    """peft is a test-only tool (it writes the tiny adapters): loading and merging never imports it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['peft'] = None\n"  # any import of peft now raises ImportError
        "from spark_jql.config import EmbedderConfig\n"
        "from spark_jql.scoring.embedder import Embedder\n"
        f"e = Embedder(EmbedderConfig(model={str(jina)!r}, device='cpu'))\n"
        "print(e.embed(e.tokenize(['hola']).ids).shape[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "32"


def test_adapter_for_another_model_is_refused(jina, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(jina, folder)
    weights = folder / "text_matching" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({k.replace("layers.0.", "layers.7."): v for k, v in tensors.items()}, str(weights))
    with pytest.raises(ModelNotAvailableError, match="layers.7.*another model"):
        Embedder(EmbedderConfig(model=str(folder), device="cpu"))
    save_file({k: v for k, v in tensors.items() if "lora_B" not in k and "embedding_B" not in k}, str(weights))
    with pytest.raises(ModelNotAvailableError, match="no matching lora_(embedding_)?B"):
        Embedder(EmbedderConfig(model=str(folder), device="cpu"))


def test_per_model_defaults_and_provenance():
    arctic = resolve(EmbedderConfig())
    assert (arctic.pooling, arctic.task_adapter) == ("cls", None)
    jina_hub = resolve(EmbedderConfig(model="jinaai/jina-embeddings-v3-hf"))
    assert (jina_hub.pooling, jina_hub.task_adapter) == ("mean", "text_matching")
    assert resolve(EmbedderConfig(model="Alibaba-NLP/gte-multilingual-base", pooling="mean")).pooling == "mean"
    record = provenance(EmbedderConfig(model="Alibaba-NLP/gte-multilingual-base", revision="abc", max_length=512))
    assert record == {"embedder": "Alibaba-NLP/gte-multilingual-base", "revision": "abc", "max_length": 512,
                      "pooling": "cls", "normalize": True, "prefix": "", "task_adapter": None, "dtype": "auto",
                      "layout": "native"}


def test_head_metadata_must_match_the_embedder(gte_bundle, tmp_path, caplog):
    from spark_jql.devtools.tiny_models import build_heads
    from spark_jql.scoring.scorer import Scorer

    model = gte_bundle["embedder"]["model"]
    wrong = build_heads(tmp_path / "wrong", 32, ["h"], hidden_dim=8, embedder="Alibaba-NLP/gte-multilingual-base")
    config = ScorerConfig(embedder={"model": model, "device": "cpu"}, heads=[{"name": "h", "path": str(wrong["h"])}])
    with pytest.raises(CheckpointError, match="trained on embeddings of 'Alibaba-NLP/gte-multilingual-base'"):
        Scorer(config)
    silent = build_heads(tmp_path / "silent", 32, ["h"], hidden_dim=8)  # like the published .ckpt files
    with caplog.at_level(logging.WARNING, logger="spark_jql.scoring.heads"):
        Scorer(config.model_copy(update={"heads": [config.heads[0].model_copy(update={"path": str(silent["h"])})]}))
    assert "does not record its embedder" in caplog.text


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_scores_from_stored_embeddings_match_scores_from_text(gte_bundle, storage):
    """Heads are Lipschitz: a stored component's relative error is at most 2^-11 (float16) or 2^-8 (bfloat16),
    so the score error is bounded by the heads' norm times that; we assert 20x the measured typical error bound:
    |Δscore| <= 4 * rel_error * sum_h ||W2|| ||W1||_2 ||e|| (with ||e|| = 1)."""
    from spark_jql.scoring.scorer import HeadScorer, Scorer

    config = ScorerConfig(embedder={"model": gte_bundle["embedder"]["model"], "device": "cpu"},
                          heads=gte_bundle["heads"], store_embedding=storage)
    scorer = Scorer(config)
    texts = TEXTS + [None, "   "]
    from_text = scorer.score(texts)
    assert from_text["jql_embedding"][3] is None and from_text["jql_embedding"][4] is None
    assert len(from_text["jql_embedding"][0]) == 2 * scorer.embedder.dim
    heads_only = HeadScorer(config).score(from_text["jql_embedding"].tolist(), storage)
    bound = max(4 * stored.RELATIVE_ERROR[storage] * float(torch.linalg.matrix_norm(scorer.heads.w1, 2))
                * float(scorer.heads.w2.abs().sum(-1).max()), 1e-6)
    for column in ["score_" + h["name"] for h in gte_bundle["heads"]] + ["jql_score"]:
        a, b = from_text[column].to_numpy(), heads_only[column].to_numpy()
        assert np.isnan(a[3:]).all() and np.isnan(b[3:]).all()
        assert np.abs(a[:3] - b[:3]).max() <= bound, (column, np.abs(a[:3] - b[:3]).max(), bound)
        if storage == "float16":
            assert np.abs(a[:3] - b[:3]).max() < 1e-2


def test_stored_width_mismatch_is_an_error():
    with pytest.raises(ValueError, match="has 3 dimensions, the heads take 4"):
        stored.decode([np.zeros(3, np.float32)], "float32", 4)


def test_embedding_needs_no_heads(gte_bundle, empty_hf_cache):
    """embed loads the encoder only: the default (published, Hub) heads are neither downloaded nor checked."""
    from spark_jql.scoring.preflight import check_scorer
    from spark_jql.scoring.scorer import Scorer

    config = ScorerConfig(embedder={"model": gte_bundle["embedder"]["model"], "device": "cpu"})  # default heads
    assert check_scorer(config, with_heads=False).heads == ()
    scorer = Scorer(config, with_heads=False)
    assert scorer.embed(TEXTS).shape == (3, 32)
    with pytest.raises(ModelNotAvailableError):
        Scorer(config)  # scoring does need them
