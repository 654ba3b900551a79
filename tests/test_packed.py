"""The packed layout against the padded one: same embeddings (fp32, CPU) for the three JQL embedders' architectures.

Tiny random models of each layout: GTE (arctic-embed-m-v2.0), the original gte-multilingual-base ("new",
NTK rope, converted), jina-embeddings-v3 (-hf, text_matching adapter merged, mean pooling). The
packed forward restarts positions at each document, restricts attention to each document and, with
CLS pooling, computes the last layer for the CLS rows alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spark_jql.config import EmbedderConfig, ScorerConfig
from spark_jql.devtools.sample_data import generate_documents
from spark_jql.scoring import packed
from spark_jql.scoring.batching import plan_micro_batches
from spark_jql.scoring.embedder import Embedder

ATOL = 1e-5


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [d["text"] for d in generate_documents(24, seed=11, mean_sentences=5)]
    return docs + ["Hi.", "光合作用", "x", "Ein Satz. " * 60]


@pytest.fixture(scope="module")
def gte_new_dir(tmp_path_factory):
    from spark_jql.devtools.tiny_models import build_original_gte

    return build_original_gte(tmp_path_factory.mktemp("packed_gte_new"), seed=5)[0]


@pytest.fixture(scope="module")
def jina_dir(tmp_path_factory):
    from spark_jql.devtools.tiny_models import build_jina

    return build_jina(tmp_path_factory.mktemp("packed_jina"), seed=6)


@pytest.fixture(params=["gte", "gte_new", "jina"])
def model_dir(request, gte_bundle, gte_new_dir, jina_dir) -> str:
    return {"gte": gte_bundle["embedder"]["model"], "gte_new": str(gte_new_dir), "jina": str(jina_dir)}[request.param]


def _embedder(model: str, layout: str, max_length: int = 256) -> Embedder:
    return Embedder(EmbedderConfig(model=model, device="cpu", dtype="float32", max_length=max_length), layout=layout)


def test_packed_equals_padded_for_the_three_architectures(model_dir, texts):
    padded, packed_ = _embedder(model_dir, "padded"), _embedder(model_dir, "packed")
    assert (padded.layout, packed_.layout) == ("padded", "packed")
    assert packed_.provenance["batch_layout"] == "packed"
    ids = padded.tokenize(texts).ids
    assert len({len(r) for r in ids}) > 10, "documents of many lengths: padding and masks matter"
    torch.testing.assert_close(packed_.embed(ids), padded.embed(ids), atol=ATOL, rtol=0)
    # one document alone, and the longest in a micro-batch of its own: the same vector
    torch.testing.assert_close(packed_.embed(ids[-1:]), padded.embed(ids[-1:]), atol=ATOL, rtol=0)


def test_cls_last_layer_is_exact(gte_bundle, texts):
    """The packed CLS path (last layer on CLS rows only) against the model's own full forward of each document."""
    from transformers import AutoModel

    embedder = _embedder(gte_bundle["embedder"]["model"], "packed")
    assert embedder.config.pooling == "cls"
    model = AutoModel.from_pretrained(gte_bundle["embedder"]["model"], dtype=torch.float32).eval()
    ids = embedder.tokenize(texts[:6]).ids
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([r])).last_hidden_state[:, 0] for r in ids])
    torch.testing.assert_close(embedder.embed(ids), torch.nn.functional.normalize(alone, dim=-1), atol=ATOL, rtol=0)


def test_pack_restarts_positions_and_counts_documents():
    batch = packed.pack([[5, 6, 7], [8], [9, 10]])
    assert batch.input_ids.tolist() == [5, 6, 7, 8, 9, 10]
    assert batch.position_ids.tolist() == [0, 1, 2, 0, 0, 1]
    assert batch.cu_seqlens.tolist() == [0, 3, 4, 6] and batch.cu_seqlens.dtype == torch.int32
    assert batch.doc_ids.tolist() == [0, 0, 0, 1, 2, 2]
    assert (batch.tokens, batch.max_length) == (6, 3)
    with pytest.raises(ValueError):
        packed.pack([[1], []])


def test_document_attention_fallback_equals_per_document_sdpa():
    torch.manual_seed(0)
    lengths = [5, 3, 1, 4]
    batch = packed.pack([[0] * n for n in lengths])
    q, k, v = (torch.randn(sum(lengths), 2, 8) for _ in range(3))
    attend = packed.DocumentAttention(batch, torch.device("cpu"), use_varlen=False)
    out, cls = attend(q, k, v, 0.3, cls_only=False), attend(q[batch.cu_seqlens[:-1].long()], k, v, 0.3, cls_only=True)
    start = 0
    for doc, n in enumerate(lengths):
        sl = slice(start, start + n)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1), scale=0.3).transpose(0, 1)
        torch.testing.assert_close(out[sl], ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(cls[doc], ref[0], atol=1e-6, rtol=0)
        start += n


def test_layout_resolution(gte_bundle, xlmr_bundle):
    gte = _embedder(gte_bundle["embedder"]["model"], "auto")
    assert gte.layout == "padded"  # auto: packed only where variable-length attention runs (CUDA)
    assert packed.resolve_layout("auto", gte.model, torch.device("cpu"), torch.float32) == "padded"
    assert not packed.varlen_available(torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="not available for model_type 'xlm-roberta'"):
        _embedder(xlmr_bundle["embedder"]["model"], "packed")
    assert _embedder(xlmr_bundle["embedder"]["model"], "auto").layout == "padded"
    with pytest.raises(ValueError):
        ScorerConfig.model_validate({"layout": "ragged"})


def test_packed_budget_counts_real_tokens():
    lengths = [100, 90, 50, 10, 10]
    padded = plan_micro_batches(lengths, 200, 100)
    real = plan_micro_batches(lengths, 200, 100, cost="real")
    assert padded == [[0, 1], [2, 3, 4]]  # 2 x 100 fits, 3 x 100 does not
    assert real == [[0, 1], [2, 3, 4]] or all(sum(lengths[i] for i in b) <= 200 for b in real)
    assert plan_micro_batches([100, 60, 40], 200, 100, cost="real") == [[0, 1, 2]]  # 3 rows x 100 would not fit


def test_scorer_packed_stats_and_provenance(gte_bundle, texts):
    cfg = {**gte_bundle, "embedder": {**gte_bundle["embedder"], "device": "cpu", "dtype": "float32", "max_length": 128},
           "token_budget": 512}
    from spark_jql.scoring.scorer import Scorer

    packed_, padded = (Scorer(ScorerConfig.model_validate({**cfg, "layout": lay})) for lay in ("packed", "padded"))
    assert packed_.provenance["batch_layout"] == "packed" and padded.provenance["batch_layout"] == "padded"
    a, b = packed_.score(texts), padded.score(texts)
    for col in a.columns:
        if a[col].dtype.kind == "f":
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=0, atol=ATOL, err_msg=col)
    assert packed_.stats["tokens"] == padded.stats["tokens"] == packed_.stats["padded_tokens"]
    assert padded.stats["padded_tokens"] > padded.stats["tokens"]
