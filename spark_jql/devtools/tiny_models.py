"""Build small JQL-shaped models offline.

Used by the README demo, the tests and the benchmark: a tokenizer trained with
``tokenizers`` on the sample corpus, an encoder (GTE like arctic-embed-m-v2.0,
or XLM-RoBERTa) created from a config and saved with ``save_pretrained``, and
heads written in the exact JQL Lightning checkpoint layout. Everything loads
through the same code path as the real models.

Randomly initialised encoders (``build_encoder``) give nearly identical CLS
vectors (pairwise cosine ~0.9999998), so scores from them are noise: right for
tests of the mechanics. ``build_bag_of_words_encoder`` is the demo's encoder: the
same GTE architecture with weights set so that CLS carries a document's bag of
words (see ``bag_of_words_weights``), which heads can learn from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from spark_jql.devtools.sample_data import all_sentences
from spark_jql.scoring.heads import HeadWeights, save_lightning_checkpoint

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
    "gte-bow": dict(  # the demo's encoder: wide enough for the bag-of-words vectors to keep the sentence kinds apart
        model_type="gte", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, vocab_size=None, max_position_embeddings=8192, rope_theta=160000.0,
    ),
    "xlmr-tiny": dict(
        model_type="xlm-roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, vocab_size=None, max_position_embeddings=514,
    ),
}

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R layout: bos 0, pad 1, eos 2


def build_tokenizer(out_dir: str | Path, texts: list[str] | None = None, vocab_size: int = 1000, model_max_length: int = 8192):
    """Train a small Unigram tokenizer (XLM-R style: ``<s> ... </s>``) and save it."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
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
                  save_tokenizer: bool = True, bag_of_words_texts: list[str] | None = None) -> Path:
    """Random encoder of a named architecture (with a trained tokenizer), saved with save_pretrained.

    ``bag_of_words_texts`` (GTE only): set the weights with :func:`bag_of_words_weights`
    fitted on these unlabelled texts instead of leaving them random.
    """
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
        if bag_of_words_texts is not None:
            bag_of_words_weights(model, tokenizer, bag_of_words_texts)
    else:
        config = XLMRobertaConfig(**spec, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    model.save_pretrained(str(out_dir))
    return out_dir


def bag_of_words_weights(model, tokenizer, texts: list[str]) -> None:
    """Make a GTE model's CLS output the (layer-normed) mean of LSA token vectors fitted on ``texts``.

    Token vectors: the top singular vectors of the TF-IDF document-term matrix of
    ``texts`` (latent semantic analysis), so tokens that occur in the same documents
    point the same way; special and unseen tokens are zero. Layer 0 attends
    uniformly (query/key weights zero) and its value/output projections copy the
    mean token vector into every position, CLS included; the MLPs and layer 1 add
    nothing, and the post-layer norms keep the direction. The result is an
    unsupervised bag-of-words embedder in transformer form: no label is used.
    """
    import numpy as np

    dim = model.config.hidden_size
    vocab = model.config.vocab_size
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    counts = np.zeros((len(texts), vocab))
    for row, tokens in zip(counts, ids):
        np.add.at(row, tokens, 1.0)
    df = (counts > 0).sum(axis=0)
    tfidf = counts * (np.log((1 + len(texts)) / (1 + df)) + 1)
    tfidf /= np.linalg.norm(tfidf, axis=1, keepdims=True) + 1e-12
    _, singular, vt = np.linalg.svd(tfidf, full_matrices=False)
    k = min(dim, len(singular))
    vectors = np.zeros((vocab, dim))
    vectors[:, :k] = vt[:k].T * singular[:k]
    vectors[(df == 0) | np.isin(np.arange(vocab), tokenizer.all_special_ids)] = 0.0
    eye = torch.eye(dim)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.copy_(torch.from_numpy(vectors).float())
        model.embeddings.token_type_embeddings.weight.zero_()
        for i, layer in enumerate(model.layers):
            attn = layer.self_attn
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
                proj.bias.zero_()
            attn.q_proj.weight.zero_()
            attn.k_proj.weight.zero_()
            attn.v_proj.weight.copy_(eye)
            attn.o_proj.weight.copy_(eye * (10.0 if i == 0 else 0.0))  # x10: the mean outweighs the token itself
            layer.mlp.down_proj.weight.zero_()
            layer.mlp.down_proj.bias.zero_()


def build_bag_of_words_encoder(out_dir: str | Path, documents: int = 1000, seed: int = 0) -> Path:
    """The demo's encoder ("gte-bow"), fitted on ``documents`` unlabelled generated documents."""
    from spark_jql.devtools.sample_data import generate_documents

    texts = [d["text"] for d in generate_documents(documents, seed=seed, mean_sentences=3)]
    return build_encoder(out_dir, "gte-bow", seed, bag_of_words_texts=texts)


def gte_to_original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A native ``GteModel`` state dict in gte-multilingual-base's remote-code ("new") key layout."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("layers."):
            out[key] = value
            continue
        _, i, rest = key.split(".", 2)
        base = f"encoder.layer.{i}."
        part = rest.rsplit(".", 1)[-1]  # weight / bias
        if rest.startswith("self_attn.q_proj"):
            qkv = [state[f"layers.{i}.self_attn.{p}_proj.{part}"] for p in "qkv"]
            out[base + f"attention.qkv_proj.{part}"] = torch.cat(qkv)
        elif rest.startswith("mlp.up_proj"):  # the original splits up_gate_proj as (up, gate)
            out[base + f"mlp.up_gate_proj.{part}"] = torch.cat([value, state[f"layers.{i}.mlp.gate_proj.{part}"]])
        elif rest.startswith(("self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj")):
            continue
        else:
            renamed = {"self_attn.o_proj": "attention.o_proj", "post_attention_layernorm": "attn_ln",
                       "post_mlp_layernorm": "mlp_ln", "mlp.down_proj": "mlp.down_proj"}
            module = rest.rsplit(".", 1)[0]
            out[base + f"{renamed[module]}.{part}"] = value
    return {k: v.contiguous() for k, v in out.items()}


def build_original_gte(out_dir: str | Path, seed: int = 0, rope_theta: float = 20000.0, ntk_factor: float = 8.0):
    """A tiny random gte-multilingual-base as published: ``model_type: "new"``, NTK rope scaling, original keys.

    Returns (directory, the native ``GteModel`` the weights came from).
    """
    from safetensors.torch import save_file
    from transformers import GteConfig, GteModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir, model_max_length=8192)
    spec = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                vocab_size=len(tokenizer), max_position_embeddings=8192,
                initializer_range=0.2)  # sharp enough attention that the rope frequencies visibly matter
    torch.manual_seed(seed)
    native = GteModel(GteConfig(**spec, rope_parameters={"rope_type": "default", "rope_theta": rope_theta}, pad_token_id=1))
    save_file(gte_to_original_layout(native.state_dict()), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = {  # the keys of Alibaba-NLP/gte-multilingual-base's config.json
        "architectures": ["NewModel"], "model_type": "new",
        "auto_map": {"AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
                     "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel"},
        **spec, "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.0, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "layer_norm_eps": 1e-12,
        "layer_norm_type": "layer_norm", "logn_attention_clip1": False, "logn_attention_scale": False,
        "pack_qkv": True, "pad_token_id": 1, "position_embedding_type": "rope",
        "rope_scaling": {"factor": ntk_factor, "type": "ntk"}, "rope_theta": rope_theta,
        "type_vocab_size": 1, "unpad_inputs": True, "use_memory_efficient_attention": False,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir, native.eval()


JINA_TASKS = ["text_matching", "retrieval_query"]


def build_jina(out_dir: str | Path, seed: int = 0, tasks: list[str] = JINA_TASKS) -> Path:
    """A tiny random ``JinaEmbeddingsV3Model`` (the ``-hf`` layout) with a random LoRA adapter per task sub-folder.

    The adapters are written by peft itself (a test-only dependency), so the files have exactly the layout
    the published checkpoint's adapters have; spark_jql reads them without peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir, model_max_length=8192)
    torch.manual_seed(seed)
    config = JinaEmbeddingsV3Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=len(tokenizer),
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
    )
    JinaEmbeddingsV3Model(config, add_pooling_layer=False).save_pretrained(str(out_dir))
    for k, task in enumerate(tasks):
        torch.manual_seed(seed + 100 + k)
        base = JinaEmbeddingsV3Model.from_pretrained(str(out_dir))
        lora = LoraConfig(r=4, lora_alpha=1, target_modules=["word_embeddings", "q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"],
                          init_lora_weights=False)  # random B as well as A: a visible effect
        get_peft_model(base, lora).save_pretrained(str(out_dir / task))
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


def build_heads(out_dir: str | Path, input_dim: int, names: list[str], hidden_dim: int = 1000, seed: int = 0,
                embedder: str | None = None, embedder_digest: str | None = None) -> dict[str, Path]:
    """Random heads in the JQL Lightning ``.ckpt`` layout, one file per name (no embedder recorded, as published;
    ``embedder`` / ``embedder_digest`` record one as ``spark-jql train`` does)."""
    out_dir = Path(out_dir)
    recorded = {k: v for k, v in (("embedder", embedder), ("embedder_digest", embedder_digest)) if v}
    return {
        name: save_lightning_checkpoint(
            random_head(name, input_dim, hidden_dim, seed + k), out_dir / f"{name}.ckpt", {"lr": 1e-3, **recorded},
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
