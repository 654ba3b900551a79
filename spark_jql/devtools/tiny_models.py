"""Build small, randomly initialised JQL-shaped models offline.

Used by the README demo, the tests and the benchmark: a tokenizer trained with
``tokenizers`` on the sample corpus, an encoder (GTE like arctic-embed-m-v2.0,
or XLM-RoBERTa) created from a config and saved with ``save_pretrained``, and
heads written in the exact JQL Lightning checkpoint layout. Everything loads
through the same code path as the real models. Scores from these are noise.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spark_jql.scoring.heads import HeadWeights, save_lightning_checkpoint
from spark_jql.devtools.sample_data import all_sentences

ARCHITECTURES = {
    # arctic-embed-m-v2.0 (GTE): 12 layers, hidden 768, 12 heads, gated MLP 3072, vocab 250,048, rope theta 160k.
    "arctic-embed-m-v2.0": dict(
        model_type="gte", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, vocab_size=250048, max_position_embeddings=8192, rope_theta=160000.0,
    ),
    "gte-small": dict(
        model_type="gte", hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=256, vocab_size=None, max_position_embeddings=8192, rope_theta=160000.0,
    ),
    "gte-tiny": dict(
        model_type="gte", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, vocab_size=None, max_position_embeddings=8192, rope_theta=160000.0,
    ),
    "xlmr-tiny": dict(
        model_type="xlm-roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, vocab_size=None, max_position_embeddings=514,
    ),
}

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R layout: bos 0, pad 1, eos 2


def build_tokenizer(out_dir: str | Path, texts: list[str] | None = None, vocab_size: int = 1000, model_max_length: int = 8192):
    """Train a small Unigram tokenizer (XLM-R style: ``<s> ... </s>``) and save it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>")
    corpus = texts or all_sentences()
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=model_max_length,
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_encoder(out_dir: str | Path, architecture: str = "gte-tiny", seed: int = 0, vocab_size: int | None = None,
                  save_tokenizer: bool = True) -> Path:
    """Random encoder of a named architecture (with a trained tokenizer), saved with save_pretrained."""
    from transformers import GteConfig, GteModel, XLMRobertaConfig, XLMRobertaModel

    spec = dict(ARCHITECTURES[architecture])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_type = spec.pop("model_type")
    if save_tokenizer:
        max_len = spec["max_position_embeddings"] - (2 if model_type == "xlm-roberta" else 0)
        tokenizer = build_tokenizer(out_dir, model_max_length=max_len)
        spec["vocab_size"] = spec["vocab_size"] or len(tokenizer)
    spec["vocab_size"] = vocab_size or spec["vocab_size"] or 1000
    torch.manual_seed(seed)
    if model_type == "gte":
        theta = spec.pop("rope_theta")
        config = GteConfig(**spec, rope_parameters={"rope_type": "default", "rope_theta": theta}, pad_token_id=1)
        model = GteModel(config)
    else:
        config = XLMRobertaConfig(**spec, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    model.save_pretrained(str(out_dir))
    return out_dir


def random_head(name: str, input_dim: int, hidden_dim: int = 1000, seed: int = 0) -> HeadWeights:
    g = torch.Generator().manual_seed(seed)
    return HeadWeights(
        name,
        torch.randn(hidden_dim, input_dim, generator=g) / input_dim**0.5,
        torch.randn(hidden_dim, generator=g) * 0.1,
        torch.randn(1, hidden_dim, generator=g) / hidden_dim**0.5,
        torch.tensor([2.5]),
    )


def build_heads(out_dir: str | Path, input_dim: int, names: list[str], hidden_dim: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Random heads in the JQL Lightning ``.ckpt`` layout, one file per name."""
    out_dir = Path(out_dir)
    return {
        name: save_lightning_checkpoint(
            random_head(name, input_dim, hidden_dim, seed + k), out_dir / f"{name}.ckpt",
            {"embedder": "tiny-random", "lr": 1e-3},
        )
        for k, name in enumerate(names)
    }


JQL_HEAD_NAMES = ["Edu-JQL-Gemma-SF", "Edu-JQL-Mistral-SF", "Edu-JQL-Llama-SF"]


def build_demo_bundle(out_dir: str | Path, architecture: str = "gte-tiny", seed: int = 0, hidden_dim: int = 64) -> dict:
    """Encoder + three JQL-named heads under ``out_dir``; returns a ``scorer`` config section."""
    out_dir = Path(out_dir)
    model_dir = build_encoder(out_dir / "encoder", architecture, seed)
    dim = ARCHITECTURES[architecture]["hidden_size"]
    heads = build_heads(out_dir / "heads", dim, JQL_HEAD_NAMES, hidden_dim=hidden_dim, seed=seed)
    return {
        "embedder": {"model": str(model_dir)},
        "heads": [{"name": n, "path": str(p)} for n, p in heads.items()],
    }
