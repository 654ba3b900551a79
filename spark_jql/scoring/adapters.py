"""Task LoRA adapters merged into the base weights while loading, without peft.

jina-embeddings-v3 keeps one LoRA adapter per task (``text_matching``, ``retrieval_query``, ...)
in a sub-folder written by peft: ``adapter_config.json`` and ``adapter_model.safetensors``. JQL
always runs one task, so the adapter is merged once, ``W <- W + scale * B @ A`` for a linear
layer and ``W <- W + scale * (B @ A)^T`` for an embedding table, and inference runs on plain
weights. Reading the two files directly keeps peft (whose releases must match transformers')
out of the run-time dependencies.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from spark_jql.errors import ModelNotAvailableError

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."
# (A key, B key, kind): peft's names for the two factors of a linear and of an embedding layer
_FACTORS = ((".lora_A.weight", ".lora_B.weight", "linear"), (".lora_embedding_A", ".lora_embedding_B", "embedding"))


def _refuse(source: str, why: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(f"task adapter {source}: {why}")


def adapter_files(folder: Path) -> tuple[Path, Path]:
    """(config, weights) of a local adapter folder, or a clear error naming what is missing."""
    config = folder / CONFIG_FILE
    weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
    if not folder.is_dir() or not config.is_file() or weights is None:
        raise _refuse(str(folder), f"needs {CONFIG_FILE} and one of {list(WEIGHT_FILES)} in that folder")
    return config, weights


def hub_adapter_files(repo_id: str, subfolder: str, revision: str | None) -> tuple[Path, Path]:
    """The adapter's two files from the Hugging Face cache or the Hub."""
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(repo_id, CONFIG_FILE, subfolder=subfolder, revision=revision))
    for name in WEIGHT_FILES:
        try:
            return config, Path(hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision))
        except Exception:  # noqa: BLE001 - try the next file name; the last failure is reported below
            continue
    raise _refuse(f"{repo_id}/{subfolder}", f"has none of {list(WEIGHT_FILES)}")


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _scale(settings: dict, module: str) -> float:
    """peft's scaling: ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), per-module patterns first."""
    rank = settings["r"]
    alpha = settings.get("lora_alpha", rank)
    for pattern, value in (settings.get("rank_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern):
            rank = value
    for pattern, value in (settings.get("alpha_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern):
            alpha = value
    return alpha / (math.sqrt(rank) if settings.get("use_rslora") else rank)


def lora_deltas(config_file: Path, weights_file: Path) -> dict[str, torch.Tensor]:
    """``{parameter name: delta}`` of every adapted layer: what the merge adds to each base weight."""
    source = str(config_file.parent)
    settings = json.loads(config_file.read_text())
    if settings.get("peft_type", "LORA") != "LORA":
        raise _refuse(source, f"peft_type {settings.get('peft_type')!r} is not LoRA")
    for key in ("use_dora", "lora_bias"):
        if settings.get(key):
            raise _refuse(source, f"{key}=true is not supported (plain LoRA only)")
    if settings.get("bias", "none") != "none":
        raise _refuse(source, f"bias={settings['bias']!r} is not supported (plain LoRA only)")
    tensors = _load_weights(weights_file)
    deltas: dict[str, torch.Tensor] = {}
    for key, a in tensors.items():
        for a_suffix, b_suffix, kind in _FACTORS:
            if not key.endswith(a_suffix):
                continue
            module = key[: -len(a_suffix)].removeprefix(_PREFIX)
            b = tensors.get(key[: -len(a_suffix)] + b_suffix)
            if b is None:
                raise _refuse(source, f"{key} has no matching {b_suffix.lstrip('.')}")
            delta = (b.double() @ a.double()) * _scale(settings, module)
            if kind == "embedding" or settings.get("fan_in_fan_out"):
                delta = delta.T
            deltas[module + ".weight"] = delta
    if not deltas:
        raise _refuse(source, "holds no LoRA weights (no *.lora_A.weight / *.lora_embedding_A tensors)")
    return deltas


def merge_lora(model: torch.nn.Module, config_file: Path, weights_file: Path) -> int:
    """Add every delta to the model's weights in place (computed in fp64, added in the weights' dtype)."""
    params = dict(model.named_parameters())
    deltas = lora_deltas(config_file, weights_file)
    missing = [name for name in deltas if name not in params]
    if missing:
        raise _refuse(str(config_file.parent), f"adapts {missing[:3]}, which this model does not have: "
                                               "it was made for another model")
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = params[name]
            if tuple(weight.shape) != tuple(delta.shape):
                raise _refuse(str(config_file.parent), f"{name}: adapter gives shape {tuple(delta.shape)}, "
                                                       f"the model's weight is {tuple(weight.shape)}")
            weight.copy_((weight.double() + delta.to(weight.device)).to(weight.dtype))
    log.info("task adapter %s: merged into %d weights", config_file.parent, len(deltas))
    return len(deltas)
