"""The original ``jinaai/jina-embeddings-v3`` checkpoint (remote-code ``XLMRobertaLoRA``), loaded natively.

That checkpoint is what JQL users download. Its ``config.json`` says ``model_type: "xlm-roberta"`` and
carries ``lora_adaptations`` (the task names, in adapter order), ``lora_rank``, ``lora_alpha``,
``rotary_emb_base``, 8194 positions and ``task_instructions``; its weights are torch parametrizations:
``<module>.parametrizations.weight.original`` is the base weight, ``...weight.0.lora_A`` / ``lora_B`` hold
one LoRA factor pair per task, stacked on the first axis. The remote code computes, for the chosen task t,

- a linear layer: ``W + scale * B[t] @ A[t]`` (A: tasks x rank x in, B: tasks x out x rank),
- an embedding table: ``W + scale * A[t] @ B[t]`` (A: tasks x vocab x rank, B: tasks x rank x dim),

with ``scale = lora_alpha / lora_rank``, on every linear and embedding layer. JQL runs one task, so the
chosen task's delta is merged once here (in float64) and the rest is transformers' own
``JinaEmbeddingsV3Model`` (post-norm layers, rotary positions): the fused ``mixer.Wqkv`` is split into
q/k/v, ``emb_ln`` / ``norm1`` / ``norm2`` / ``mixer.out_proj`` are renamed. No remote code runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from spark_jql.errors import ModelNotAvailableError

ORIGINAL = ".parametrizations.weight.original"
LORA_A, LORA_B = ".parametrizations.weight.0.lora_A", ".parametrizations.weight.0.lora_B"
WEIGHT_INDEX = "model.safetensors.index.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DROPPED = ("pooler.", "lm_head.")  # not used by mean pooling
_RENAMES = (("emb_ln.", "embeddings.LayerNorm."), ("encoder.layers.", "layers."), (".mixer.out_proj.", ".self_attn.o_proj."),
            (".norm1.", ".post_attention_layernorm."), (".norm2.", ".post_mlp_layernorm."))
# Settings of the remote code that the native class computes only at these values.
_REQUIRED = {"position_embedding_type": "rotary", "rotary_emb_interleaved": False, "rotary_emb_scale_base": None}


def is_original(raw: dict | None) -> bool:
    """Whether a ``config.json`` is the original (remote-code, ``lora_adaptations``) jina-embeddings-v3 layout."""
    return bool(raw) and "lora_adaptations" in raw


def canonical_task(name: str) -> str:
    """``text-matching``, ``text_matching`` and ``text.matching`` name one task (the -hf folders use ``_``)."""
    return re.sub(r"[-._]", "_", name.strip().lower())


def task_index(raw: dict, task: str) -> int:
    """Position of ``task`` in ``lora_adaptations`` (its adapter's index in the stacked LoRA tensors)."""
    names = [canonical_task(t) for t in raw["lora_adaptations"]]
    if canonical_task(task) not in names:
        raise ModelNotAvailableError(
            f"jina-embeddings-v3 has no task {task!r}; its config's lora_adaptations are {raw['lora_adaptations']}")
    return names.index(canonical_task(task))


def task_instruction(raw: dict, task: str | None) -> str | None:
    """``task_instructions[task]`` of the checkpoint's config (what the remote ``encode()`` prepends); None if absent."""
    instructions = raw.get("task_instructions") or {}
    if not task:
        return None
    by_name = {canonical_task(k): v for k, v in instructions.items()}
    return by_name.get(canonical_task(task))


def native_config(raw: dict, attn_implementation: str | None = None):
    """The original config as transformers' ``JinaEmbeddingsV3Config`` (refusing what that class cannot compute)."""
    from transformers import JinaEmbeddingsV3Config

    for key, wanted in _REQUIRED.items():
        if raw.get(key, wanted) != wanted:
            raise ModelNotAvailableError(
                f"jina-embeddings-v3 config {key}={raw[key]!r}: only {wanted!r} is supported natively "
                "(set embedder.trust_remote_code=true to run its own code)")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "bos_token_id",
            "eos_token_id", "initializer_range")
    spec = {k: raw[k] for k in keys if k in raw}
    theta = float(raw.get("rotary_emb_base", 10000.0))  # the remote config's default
    config = JinaEmbeddingsV3Config(**spec, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    rope_parameters={"rope_type": "default", "rope_theta": theta})
    if attn_implementation:
        config._attn_implementation = attn_implementation
    return config


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight file(s) in a local folder (a sharded index or one file)."""
    index = folder / WEIGHT_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    found = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
    if found is None:
        raise ModelNotAvailableError(f"jina-embeddings-v3 {folder}: none of {list(WEIGHT_FILES)} / {WEIGHT_INDEX}")
    return [found]


def hub_weight_files(repo_id: str, revision: str | None, local: bool) -> list[Path]:
    """The checkpoint's weight file(s) from the Hugging Face cache or the Hub (never its ONNX copies)."""
    from huggingface_hub import hf_hub_download

    get = lambda name: Path(hf_hub_download(repo_id, name, revision=revision, local_files_only=local))  # noqa: E731
    try:
        index = get(WEIGHT_INDEX)
    except Exception:  # noqa: BLE001 - not sharded: one file
        return [get(WEIGHT_FILES[0])]
    return [get(s) for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]


def read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            out.update(load_file(str(path)))
        else:
            out.update(torch.load(str(path), map_location="cpu", weights_only=True))
    return out


def merged_state(tensors: dict[str, torch.Tensor], raw: dict, task: str | None) -> dict[str, torch.Tensor]:
    """The native state dict: the task's LoRA merged (none when ``task`` is None), keys renamed, Wqkv split."""
    t = task_index(raw, task) if task else None
    scale = float(raw.get("lora_alpha", 1)) / float(raw.get("lora_rank", 4))
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = key.removeprefix("roberta.")
        if name.endswith((LORA_A, LORA_B)) or name.startswith(_DROPPED):
            continue
        if name.endswith(ORIGINAL):
            module = key[: -len(ORIGINAL)]
            name = name[: -len(ORIGINAL)] + ".weight"
            if t is not None:
                value = _merge(module, value, tensors, t, scale)
        state[name] = value
    return _rename(state)


def _merge(module: str, weight: torch.Tensor, tensors: dict, t: int, scale: float) -> torch.Tensor:
    a, b = tensors.get(module + LORA_A), tensors.get(module + LORA_B)
    if a is None or b is None:
        raise ModelNotAvailableError(f"jina-embeddings-v3 weights: {module} has a parametrized weight but no lora_A/lora_B")
    if t >= a.shape[0] or t >= b.shape[0]:
        raise ModelNotAvailableError(f"jina-embeddings-v3 weights: {module} holds {a.shape[0]} adapters, task index {t}")
    embedding = module.split(".")[-1].endswith("embeddings")  # word_embeddings, token_type_embeddings
    delta = a[t].double() @ b[t].double() if embedding else b[t].double() @ a[t].double()
    if tuple(delta.shape) != tuple(weight.shape):
        raise ModelNotAvailableError(f"jina-embeddings-v3 weights: {module}: LoRA gives shape {tuple(delta.shape)}, "
                                     f"the weight is {tuple(weight.shape)}")
    return (weight.double() + scale * delta).to(weight.dtype)


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in _RENAMES:
            key = key.replace(old, new) if old.startswith(".") else (new + key[len(old):] if key.startswith(old) else key)
        if ".mixer.Wqkv." in key:  # (3*hidden, ...) -> q, k, v
            for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                out[key.replace(".mixer.Wqkv.", f".self_attn.{part}_proj.")] = chunk.contiguous()
        else:
            out[key] = value
    return out


def load(raw: dict, files: list[Path], task: str | None, dtype: torch.dtype, attn_implementation: str | None):
    """A ``JinaEmbeddingsV3Model`` holding the original checkpoint with ``task``'s LoRA merged, in ``dtype``.

    Parameters are cast after the merge; buffers (the rotary frequencies) stay float32."""
    from transformers import JinaEmbeddingsV3Model
    from transformers.initialization import no_init_weights

    config = native_config(raw, attn_implementation)
    with no_init_weights():
        model = JinaEmbeddingsV3Model(config, add_pooling_layer=False)
    state = merged_state(read_tensors(files), raw, task)
    expected = {k for k in model.state_dict()}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelNotAvailableError(f"jina-embeddings-v3 weights do not fit the native class: missing {missing[:4]}, "
                                     f"unexpected {unexpected[:4]}")
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(cast, strict=True, assign=True)  # assign: the parameters take the tensors' dtype
    return model
