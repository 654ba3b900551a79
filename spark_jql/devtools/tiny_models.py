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


def build_sentencepiece_tokenizer(out_dir: str | Path, texts: list[str], vocab_size: int = 2000,
                                  normalizer: str = "precompiled", model_max_length: int = 8192) -> Path:
    """An XLM-R-layout ``tokenizer.json`` from a sentencepiece Unigram trained with the ``nmt_nfkc`` rule.

    The layout the three JQL embedders ship: ``Sequence[Precompiled(charsmap), Replace(" {2,}", " ")]``
    normaliser (``normalizer="nfkc"``: ``NFKC`` instead of the charsmap), ``Metaspace`` pre-tokeniser,
    ``<s> $A </s>``; ids 0-3 are ``<s> <pad> </s> <unk>`` and ``<mask>`` is last. Written with
    ``tokenizers`` directly, with the ``tokenizer_config.json`` of an XLM-R checkpoint (tokenizer class
    ``XLMRobertaTokenizer``), so transformers 5's ``AutoTokenizer`` takes the rebuilding path.
    Needs ``sentencepiece`` (a test extra)."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size, model_type="unigram",
        normalization_rule_name="nmt_nfkc", bos_id=0, pad_id=1, eos_id=2, unk_id=3, num_threads=1,
        minloglevel=2, hard_vocab_limit=False, max_sentence_length=1 << 16)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    vocab = [(p.piece, p.score if p.type == 1 else 0.0) for p in proto.pieces] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    first = normalizers.NFKC() if normalizer == "nfkc" else normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)
    tok.normalizer = normalizers.Sequence([first, normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(out_dir / "tokenizer.json"))
    specials = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>", pad_token="<pad>",
                    cls_token="<s>", mask_token="<mask>")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": model_max_length, **specials}, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    return out_dir


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


JINA_V3_TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
JINA_V3_INSTRUCTIONS = {"retrieval.query": "Represent the query for retrieving evidence documents: ",
                        "retrieval.passage": "Represent the document for retrieval: ",
                        "separation": "", "classification": "", "text-matching": ""}


def _native_to_original_key(key: str) -> str:
    """A ``JinaEmbeddingsV3Model`` key in the remote code's (``XLMRobertaLoRA.roberta``) naming, before parametrization."""
    for new, old in (("embeddings.LayerNorm.", "emb_ln."), ("layers.", "encoder.layers.")):
        if key.startswith(new):
            key = old + key[len(new):]
    for new, old in ((".self_attn.o_proj.", ".mixer.out_proj."), (".post_attention_layernorm.", ".norm1."),
                     (".post_mlp_layernorm.", ".norm2.")):
        key = key.replace(new, old)
    return "roberta." + key


def build_jina_original(out_dir: str | Path, seed: int = 0, lora_rank: int = 4, lora_alpha: float = 2.0):
    """A tiny random jina-embeddings-v3 in the layout its Hub repo publishes (remote-code ``XLMRobertaLoRA``).

    Weights are torch parametrizations with one non-zero LoRA pair per task stacked on the first axis
    (``...parametrizations.weight.original`` / ``.0.lora_A`` / ``.0.lora_B``), on every linear and
    embedding layer, and the config carries ``lora_adaptations``, ``task_instructions``, ``rotary_emb_base``.
    Returns (directory, the native base model the weights came from, ``{original key: tensor}`` as saved)."""
    from safetensors.torch import save_file
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir, model_max_length=8194)
    spec = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=8194, type_vocab_size=1, layer_norm_eps=1e-5,
                hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2, initializer_range=0.2)
    torch.manual_seed(seed)
    native = JinaEmbeddingsV3Model(JinaEmbeddingsV3Config(
        **spec, rope_parameters={"rope_type": "default", "rope_theta": 20000.0}), add_pooling_layer=False).eval()
    state = native.state_dict()
    tasks = len(JINA_V3_TASKS)
    g = torch.Generator().manual_seed(seed + 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
            continue
        if ".self_attn.q_proj." in key:  # the remote code keeps q, k, v fused
            parts = [state[key.replace(".q_proj.", f".{p}_proj.")] for p in "qkv"]
            key, value = key.replace(".self_attn.q_proj.", ".mixer.Wqkv."), torch.cat(parts)
        name = _native_to_original_key(key)
        module, param = name.rsplit(".", 1)
        is_embedding = module.endswith("embeddings")
        if param == "weight" and value.ndim == 2:  # every linear and embedding weight is parametrized with LoRA
            rows, cols = value.shape
            if is_embedding:  # A: tasks x vocab x rank, B: tasks x rank x dim
                a, b = torch.randn(tasks, rows, lora_rank, generator=g), torch.randn(tasks, lora_rank, cols, generator=g)
            else:  # A: tasks x in x ... (rank x in), B: tasks x out x rank
                a = torch.randn(tasks, lora_rank, cols, generator=g) / cols ** 0.5
                b = torch.randn(tasks, rows, lora_rank, generator=g) * 0.2
            if is_embedding:
                a, b = a * 0.1, b * 0.1
            out[module + ".parametrizations.weight.original"] = value.clone()
            out[module + ".parametrizations.weight.0.lora_A"] = a
            out[module + ".parametrizations.weight.0.lora_B"] = b
        else:
            out[name] = value.clone()
    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = {  # the keys of jinaai/jina-embeddings-v3's config.json
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
        "auto_map": {"AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
                     "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA"},
        **spec, "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "classifier_dropout": None,
        "emb_pooler": None, "load_trained_adapters": True, "lora_adaptations": JINA_V3_TASKS,
        "lora_alpha": lora_alpha, "lora_dropout_p": 0.0, "lora_main_params_trainable": False, "lora_rank": lora_rank,
        "matryoshka_dimensions": [8, 16, 32], "position_embedding_type": "rotary", "rotary_emb_base": 20000.0,
        "task_instructions": JINA_V3_INSTRUCTIONS, "torch_dtype": "float32", "truncate_dim": None,
        "use_cache": True, "use_flash_attn": True, "use_reentrant": False,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir, native, out


def jina_original_to_hf(original_dir: str | Path, out_dir: str | Path, tasks: list[str] | None = None) -> Path:
    """The same tiny checkpoint in the converted ``-hf`` layout: base model + one peft-layout adapter folder per task.

    Linear ``B[t] @ A[t]`` becomes peft's ``lora_B.weight @ lora_A.weight`` (Wqkv's B split into q/k/v rows);
    the embedding ``A[t] @ B[t]`` becomes ``(lora_embedding_B @ lora_embedding_A)^T``."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    original_dir, out_dir = Path(original_dir), Path(out_dir)
    raw = json.loads((original_dir / "config.json").read_text())
    tensors = load_file(str(original_dir / "model.safetensors"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (original_dir / name).is_file():
            shutil.copy(original_dir / name, out_dir / name)
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id")
    config = JinaEmbeddingsV3Config(**{k: raw[k] for k in keys},
                                    rope_parameters={"rope_type": "default", "rope_theta": raw["rotary_emb_base"]})
    model = JinaEmbeddingsV3Model(config, add_pooling_layer=False)
    native_names = {_native_to_original_key(k): k for k in model.state_dict()}
    base = {}
    for key, value in tensors.items():
        if key.endswith((".0.lora_A", ".0.lora_B")):
            continue
        key = key.replace(".parametrizations.weight.original", ".weight")
        if ".mixer.Wqkv." in key:
            for p, chunk in zip("qkv", value.chunk(3)):
                base[native_names[key.replace(".mixer.Wqkv.", ".self_attn.q_proj.")].replace(".q_proj.", f".{p}_proj.")] = chunk
        else:
            base[native_names[key]] = value
    model.load_state_dict(base, strict=True)
    model.save_pretrained(str(out_dir))
    scale_args = {"r": raw["lora_rank"], "lora_alpha": raw["lora_alpha"]}
    for t, task in enumerate(raw["lora_adaptations"]):
        folder_name = task.replace("-", "_").replace(".", "_")
        if tasks is not None and folder_name not in tasks:
            continue
        adapter = {}
        for key in tensors:
            if not key.endswith(".0.lora_A"):
                continue
            module = key[: -len(".parametrizations.weight.0.lora_A")]
            a, b = tensors[key][t], tensors[module + ".parametrizations.weight.0.lora_B"][t]
            native = native_names.get(module + ".weight", native_names.get(
                module.replace(".mixer.Wqkv", ".self_attn.q_proj") + ".weight", "")).removesuffix(".weight")
            if module.endswith("embeddings"):
                adapter[f"base_model.model.{native}.lora_embedding_A"] = a.T.contiguous()
                adapter[f"base_model.model.{native}.lora_embedding_B"] = b.T.contiguous()
            elif ".mixer.Wqkv" in module:
                for p, chunk in zip("qkv", b.chunk(3)):
                    target = native.replace(".q_proj", f".{p}_proj")
                    adapter[f"base_model.model.{target}.lora_A.weight"] = a.clone()
                    adapter[f"base_model.model.{target}.lora_B.weight"] = chunk.contiguous()
            else:
                adapter[f"base_model.model.{native}.lora_A.weight"] = a.contiguous()
                adapter[f"base_model.model.{native}.lora_B.weight"] = b.contiguous()
        (out_dir / folder_name).mkdir(exist_ok=True)
        save_file(adapter, str(out_dir / folder_name / "adapter_model.safetensors"), metadata={"format": "pt"})
        (out_dir / folder_name / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", **scale_args, "bias": "none", "target_modules": ["word_embeddings", "q_proj", "k_proj",
             "v_proj", "o_proj", "fc1", "fc2", "token_type_embeddings"], "task_type": None}, indent=2))
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
