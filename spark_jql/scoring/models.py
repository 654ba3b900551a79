"""The three JQL embedders: per-model defaults, and loading each into a native transformers class.

- Snowflake/snowflake-arctic-embed-m-v2.0: ``model_type: gte``, loads as ``GteModel``; CLS pooling.
- Alibaba-NLP/gte-multilingual-base: its config says ``model_type: "new"`` (the remote-code name) with
  ``rope_scaling {"type": "ntk", "factor": f}``. transformers' GTE documentation expresses that static
  NTK scaling as a ``linear`` rope entry whose ``rope_theta`` is the base times ``f``: the original
  computes ``inv_freq = (theta*f) ** (-2i/d) / f ** (2/d)``, i.e. the base ``theta*f`` with every
  frequency divided by ``f ** (2/d)`` (linear scaling with that factor). :func:`convert_new_config`
  does that; the weights (``qkv_proj``, ``up_gate_proj``, ...) are converted by transformers' own GTE
  loader. CLS pooling.
- jinaai/jina-embeddings-v3-hf: ``JinaEmbeddingsV3Model``; the task LoRA adapters live in
  sub-folders (``text_matching``, ...) and are merged into the weights while loading
  (``scoring/adapters.py``, no peft). JQL calls ``encode(task="text-matching")``: the ``text_matching`` adapter, mean pooling.
  The original ``jinaai/jina-embeddings-v3`` (remote-code ``XLMRobertaLoRA``) has no native class.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spark_jql.config import EmbedderConfig
from spark_jql.errors import ModelNotAvailableError

log = logging.getLogger(__name__)

# Defaults by Hub name (the part after the organisation, lower case), for settings left at "auto".
KNOWN_EMBEDDERS = {
    "snowflake-arctic-embed-m-v2.0": {"pooling": "cls", "task_adapter": None},
    "gte-multilingual-base": {"pooling": "cls", "task_adapter": None},
    "jina-embeddings-v3-hf": {"pooling": "mean", "task_adapter": "text_matching"},
    "jina-embeddings-v3": {"pooling": "mean", "task_adapter": "text_matching"},
}
# Defaults by model_type, for local copies whose name says nothing.
_BY_MODEL_TYPE = {"jina_embeddings_v3": {"pooling": "mean", "task_adapter": "text_matching"}}
_FALLBACK = {"pooling": "cls", "task_adapter": None}  # the JQL recipe

# Keys of gte-multilingual-base's original config that change the computation; refused unless at these values.
_NEW_REQUIRED = {"position_embedding_type": "rope", "layer_norm_type": "layer_norm", "logn_attention_scale": False}


def local_config(model: str) -> dict | None:
    """``config.json`` of a local model directory (None for a Hub id or when absent)."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ModelNotAvailableError(f"embedder {model!r}: {path} is not valid JSON ({err})") from None


def _defaults(config: EmbedderConfig) -> dict:
    name = config.model.rstrip("/").rsplit("/", 1)[-1].lower()
    if name in KNOWN_EMBEDDERS:
        return KNOWN_EMBEDDERS[name]
    raw = local_config(config.model) or {}
    return _BY_MODEL_TYPE.get(raw.get("model_type"), _FALLBACK)


def resolve(config: EmbedderConfig) -> EmbedderConfig:
    """``config`` with every ``auto`` pooling / task adapter replaced by the model's default."""
    defaults = _defaults(config)
    update = {}
    if config.pooling == "auto":
        update["pooling"] = defaults["pooling"]
    if config.task_adapter == "auto":
        update["task_adapter"] = defaults["task_adapter"]
    return config.model_copy(update=update) if update else config


def provenance(config: EmbedderConfig, dtype: str | None = None) -> dict:
    """What made an embedding: recorded with every embedding and score column, compared against heads."""
    r = resolve(config)
    return {
        "embedder": r.model, "revision": r.revision, "max_length": r.max_length, "pooling": r.pooling,
        "normalize": r.normalize, "prefix": r.prefix, "task_adapter": r.task_adapter,
        "dtype": dtype or r.dtype,
    }


def embedding_metadata(config: EmbedderConfig, encoding: str, heads: list[str] | None = None) -> dict:
    """Spark column metadata for embeddings / scores: provenance, storage encoding, width when known here."""
    meta = {**provenance(config), "encoding": encoding}
    raw = local_config(config.model)
    if raw and raw.get("hidden_size"):
        meta["dim"] = int(raw["hidden_size"])
    if heads is not None:
        meta["heads"] = heads
    return meta


def convert_new_config(raw: dict) -> dict:
    """gte-multilingual-base's ``model_type: "new"`` config -> a native ``gte`` config (see module doc)."""
    for key, wanted in _NEW_REQUIRED.items():
        if key in raw and raw[key] != wanted:
            raise ModelNotAvailableError(
                f"cannot convert this 'new' (GTE) config to transformers' GteModel: {key}={raw[key]!r} "
                f"(only {wanted!r} is supported natively); set embedder.trust_remote_code=true to run its own code"
            )
    out = {k: v for k, v in raw.items() if k not in ("auto_map", "rope_scaling", "rope_theta", "architectures")}
    out["model_type"] = "gte"
    out["architectures"] = ["GteModel"]
    theta = float(raw.get("rope_theta", 10000.0))
    scaling = raw.get("rope_scaling")
    if not scaling:
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
        return out
    kind = scaling.get("type", scaling.get("rope_type"))
    if kind != "ntk" or scaling.get("mixed_b") is not None:
        raise ModelNotAvailableError(
            f"cannot convert rope_scaling {scaling!r} of a 'new' (GTE) config: only fixed NTK scaling is supported"
        )
    factor = float(scaling["factor"])
    head_dim = raw["hidden_size"] // raw["num_attention_heads"]
    out["rope_parameters"] = {"rope_type": "linear", "rope_theta": theta * factor, "factor": factor ** (2.0 / head_dim)}
    return out


def _remote_config(model: str, revision: str | None) -> dict | None:
    """``config.json`` of a Hub model from the cache or the Hub (None when unavailable: transformers reports it)."""
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, "config.json", revision=revision)).read_text())
    except Exception:
        return None


def load_encoder(config: EmbedderConfig, dtype, local: bool):
    """The encoder as a native transformers model (``trust_remote_code`` only when asked for)."""
    from transformers import AutoModel

    common = dict(revision=config.revision, trust_remote_code=config.trust_remote_code, local_files_only=local)
    kwargs = dict(dtype=dtype, attn_implementation=config.attn_implementation, **common)
    raw = local_config(config.model) if local else _remote_config(config.model, config.revision)
    if raw is not None and not config.trust_remote_code:
        if raw.get("model_type") == "new":
            from transformers import GteConfig

            kwargs["config"] = GteConfig.from_dict(convert_new_config(raw), attn_implementation=config.attn_implementation)
        elif "lora_adaptations" in raw:
            raise ModelNotAvailableError(
                f"embedder {config.model!r} is the remote-code jina-embeddings-v3 (XLMRobertaLoRA); transformers' "
                f"native class loads the converted checkpoint 'jinaai/jina-embeddings-v3-hf' (or set trust_remote_code)"
            )
    model = AutoModel.from_pretrained(config.model, **kwargs)
    if config.task_adapter:
        _apply_adapter(model, config, local)
    return model


def _apply_adapter(model, config: EmbedderConfig, local: bool) -> None:
    """Merge the task LoRA adapter from its sub-folder into the weights (no peft: see scoring/adapters.py)."""
    from spark_jql.scoring import adapters

    name = config.task_adapter
    if local:
        folder = Path(config.model).expanduser() / name
        if not folder.is_dir():
            raise ModelNotAvailableError(f"embedder.task_adapter={name!r}: no adapter folder {folder}")
        files = adapters.adapter_files(folder)
    else:
        try:
            files = adapters.hub_adapter_files(config.model, name, config.revision)
        except ModelNotAvailableError:
            raise
        except Exception as err:
            from spark_jql.scoring.hub import model_load_error

            raise model_load_error(config.model, err) from None
    adapters.merge_lora(model, *files)
    log.info("embedder %s: task adapter %s merged", config.model, name)
