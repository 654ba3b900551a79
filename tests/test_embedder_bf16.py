"""bfloat16 must not corrupt rotary positions.

Casting a loaded GTE model with ``.to(torch.bfloat16)`` also casts its rotary
``inv_freq`` buffer; at head_dim 64 the cos/sin tables then drift badly at long
positions. The Embedder loads with ``from_pretrained(dtype=...)``, which keeps that
buffer in float32. This test shows both: our bf16 embeddings stay close to float32
on ~1-2k-token documents, and the wrong path is clearly further off, so the test
would catch a regression to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spark_jql.config import EmbedderConfig
from spark_jql.devtools.sample_data import SENTENCES
from spark_jql.devtools.tiny_models import ARCHITECTURES, build_encoder
from spark_jql.scoring.embedder import Embedder

MAX_LENGTH = 2048


@pytest.fixture(scope="module")
def rope_encoder(tmp_path_factory) -> Path:
    """gte-small (head_dim 64, rope theta 160k) with weights large enough for attention to depend on position."""
    from transformers import AutoConfig, AutoModel

    spec = ARCHITECTURES["gte-small"]
    assert spec["model_type"] == "gte" and spec["hidden_size"] // spec["num_attention_heads"] == 64
    model_dir = build_encoder(tmp_path_factory.mktemp("gte_small"), "gte-small", seed=0)
    # build_encoder initialises with std 0.02: attention is then nearly uniform and the CLS output hardly
    # depends on positions, so even a broken rotary table would not show. Re-draw the same architecture
    # with std 0.2 (same config, same tokenizer) so that positions matter.
    config = AutoConfig.from_pretrained(model_dir)
    config.initializer_range = 0.2
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(str(model_dir))
    return model_dir


def long_texts() -> list[str]:
    picks = [(("eng", "Latn"), 40), (("deu", "Latn"), 45), (("rus", "Cyrl"), 35), (("cmn", "Hani"), 90)]
    return [" ".join(SENTENCES[key][i % len(SENTENCES[key])] for i in range(n)) for key, n in picks]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1)


def test_bf16_keeps_rotary_frequencies_float32(rope_encoder):
    from transformers import AutoModel

    def config(dtype):
        return EmbedderConfig(model=str(rope_encoder), dtype=dtype, device="cpu", max_length=MAX_LENGTH)

    fp32 = Embedder(config("float32"))
    bf16 = Embedder(config("bfloat16"))
    assert bf16.dtype == torch.bfloat16
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    rotary = {name: buf for name, buf in bf16.model.named_buffers() if name.endswith("inv_freq")}
    assert rotary, "the GTE model should have a rotary inv_freq buffer"
    assert all(buf.dtype == torch.float32 for buf in rotary.values()), {n: b.dtype for n, b in rotary.items()}

    tokenized = fp32.tokenize(long_texts())
    lengths = tokenized.lengths.tolist()
    assert all(900 <= n < MAX_LENGTH for n in lengths), lengths
    assert not tokenized.truncated.any()

    reference = fp32.embed(tokenized.ids)
    ours = bf16.embed(tokenized.ids)
    assert ours.dtype == torch.float32  # normalised in float32 whatever the model dtype

    # The wrong path: load in float32, then cast the whole module (buffers included).
    wrong = AutoModel.from_pretrained(str(rope_encoder), dtype=torch.float32).eval().to(torch.bfloat16)
    assert all(buf.dtype == torch.bfloat16 for name, buf in wrong.named_buffers() if name.endswith("inv_freq"))
    input_ids, mask = fp32.pad(tokenized.ids)
    with torch.inference_mode():
        cast = wrong(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, 0].float()

    cos_ours = cosine(ours, reference)
    cos_wrong = cosine(cast, reference)
    # Documents differ from each other far more than bf16 rounding moves them: the model is position/content sensitive.
    assert cosine(reference[:1], reference[1:]).max() < 0.95
    assert cos_ours.min() > 0.995, cos_ours
    assert (1 - cos_wrong).max() > 0.01, cos_wrong
    assert (1 - cos_wrong).mean() > 10 * (1 - cos_ours).mean(), (cos_ours, cos_wrong)
