"""The three JQL embedders: per-model defaults, and loading each into a native transformers class.

- Snowflake/snowflake-arctic-embed-m-v2.0: ``model_type: gte``, loads as ``GteModel``; CLS pooling.
- Alibaba-NLP/gte-multilingual-base: its config says ``model_type: "new"`` (the remote-code name) with
  ``rope_scaling {"type": "ntk", "factor": f}``. transformers' GTE documentation expresses that static
  NTK scaling as a ``linear`` rope entry whose ``rope_theta`` is the base times ``f``: the original
  computes ``inv_freq = (theta*f) ** (-2i/d) / f ** (2/d)``, i.e. the base ``theta*f`` with every
  frequency divided by ``f ** (2/d)`` (linear scaling with that factor). :func:`convert_new_config`
  does that; the weights (``qkv_proj``, ``up_gate_proj``, ...) are converted by transformers' own GTE
  loader. CLS pooling.
- jinaai/jina-embeddings-v3 (the original, remote-code ``XLMRobertaLoRA`` layout JQL downloads): loaded
  into the native ``JinaEmbeddingsV3Model`` with the task's stacked LoRA merged (``scoring/jina_original.py``).
- jinaai/jina-embeddings-v3-hf: ``JinaEmbeddingsV3Model``; the task LoRA adapters live in
  sub-folders (``text_matching``, ...) and are merged into the weights while loading
  (``scoring/adapters.py``, no peft).
  JQL calls ``encode(task="text-matching")``: the text-matching adapter, the task's instruction from
  ``config.task_instructions`` as prefix ("" for text-matching), truncation at the tokenizer's 8194, mean pooling.

Settings left at ``auto`` / None (pooling, task adapter, prefix, max length) take the model's default here.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from spark_jql.config import DEFAULT_MAX_LENGTH, EmbedderConfig
from spark_jql.errors import ModelNotAvailableError
from spark_jql.scoring import jina_original

log = logging.getLogger(__name__)

_JINA = {"pooling": "mean", "task_adapter": "text_matching", "max_length": 8194}
_PLAIN = {"pooling": "cls", "task_adapter": None, "max_length": DEFAULT_MAX_LENGTH}  # the JQL recipe
# Defaults by Hub name (the part after the organisation, lower case), for settings left at "auto".
KNOWN_EMBEDDERS = {
    "snowflake-arctic-embed-m-v2.0": _PLAIN,
    "gte-multilingual-base": _PLAIN,
    "jina-embeddings-v3-hf": _JINA,
    "jina-embeddings-v3": _JINA,
}
# Defaults by model_type, for local copies whose name says nothing.
_BY_MODEL_TYPE = {"jina_embeddings_v3": _JINA}
_FALLBACK = _PLAIN
# jinaai/jina-embeddings-v3's config.json ``task_instructions``, for a copy whose config does not carry them (-hf).
JINA_V3_INSTRUCTIONS = {"retrieval_query": "Represent the query for retrieving evidence documents: ",
                        "retrieval_passage": "Represent the document for retrieval: ",
                        "separation": "", "classification": "", "text_matching": ""}

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


def raw_config(config: EmbedderConfig) -> dict | None:
    """The checkpoint's ``config.json``: a local folder's, else the Hub cache's (downloaded when online); None if absent."""
    raw = local_config(config.model)
    if raw is not None or Path(config.model).expanduser().exists():
        return raw
    return _remote_config(config.model, config.revision)


def _defaults(config: EmbedderConfig, raw: dict | None) -> dict:
    name = config.model.rstrip("/").rsplit("/", 1)[-1].lower()
    if jina_original.is_original(raw):
        return _JINA
    if name in KNOWN_EMBEDDERS:
        return KNOWN_EMBEDDERS[name]
    return _BY_MODEL_TYPE.get((raw or {}).get("model_type"), _FALLBACK)


def layout(config: EmbedderConfig, raw: dict | None = None) -> str:
    """How the checkpoint loads: ``jina-original`` (remote-code layout, loaded natively), ``gte-new``, ``native``."""
    raw = raw if raw is not None else (local_config(config.model) or {})
    if jina_original.is_original(raw):
        return "jina-original"
    return "gte-new" if raw.get("model_type") == "new" else "native"


def _is_jina(config: EmbedderConfig, raw: dict | None) -> bool:
    return _defaults(config, raw) is _JINA


def _instruction(config: EmbedderConfig, raw: dict | None, task: str | None) -> str:
    """The task's instruction (what jina's ``encode()`` prepends): from the checkpoint's config, else the published one."""
    if not task:
        return ""
    found = jina_original.task_instruction(raw or {}, task)
    if found is None:
        found = JINA_V3_INSTRUCTIONS.get(jina_original.canonical_task(task))
    if found is None:
        raise ModelNotAvailableError(f"embedder {config.model!r}: no instruction known for task {task!r}; "
                                     "set embedder.prefix explicitly ('' for none)")
    return found


def resolve(config: EmbedderConfig, raw: dict | None = None) -> EmbedderConfig:
    """``config`` with every ``auto`` pooling / task adapter / max length and a None prefix replaced by the model's default.

    ``raw`` is the checkpoint's config.json when the caller has it; otherwise it is read only when a default needs it."""
    if config.pooling != "auto" and config.task_adapter != "auto" and config.max_length != "auto" \
            and config.prefix is not None:
        return config
    name = config.model.rstrip("/").rsplit("/", 1)[-1].lower()
    if raw is None and (name not in KNOWN_EMBEDDERS or (config.prefix is None and KNOWN_EMBEDDERS[name] is _JINA)):
        raw = raw_config(config)
    defaults = _defaults(config, raw)
    update = {}
    if config.pooling == "auto":
        update["pooling"] = defaults["pooling"]
    if config.task_adapter == "auto":
        update["task_adapter"] = defaults["task_adapter"]
    if config.max_length == "auto":
        update["max_length"] = int(defaults["max_length"])
    if config.prefix is None:
        task = update.get("task_adapter", config.task_adapter)
        update["prefix"] = _instruction(config, raw, task) if defaults is _JINA else ""
    return config.model_copy(update=update)


def provenance(config: EmbedderConfig, dtype: str | None = None) -> dict:
    """What made an embedding: recorded with every embedding and score column, compared against heads."""
    raw = raw_config(config) if _needs_raw(config) else None
    r = resolve(config, raw)
    return {
        "embedder": r.model, "revision": r.revision, "max_length": r.max_length, "pooling": r.pooling,
        "normalize": r.normalize, "prefix": r.prefix, "task_adapter": r.task_adapter,
        "dtype": dtype or r.dtype, "layout": layout(config, raw),
    }


def _needs_raw(config: EmbedderConfig) -> bool:
    """Whether the layout can differ from ``native`` (a local folder, or a name not among the known embedders)."""
    name = config.model.rstrip("/").rsplit("/", 1)[-1].lower()
    return Path(config.model).expanduser().exists() or name not in KNOWN_EMBEDDERS or name == "jina-embeddings-v3"


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


@lru_cache(maxsize=32)
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
        elif jina_original.is_original(raw):
            return _load_jina_original(config, raw, dtype, local)
    model = AutoModel.from_pretrained(config.model, **kwargs)
    if config.task_adapter:
        _apply_adapter(model, config, local)
    return model


def _load_jina_original(config: EmbedderConfig, raw: dict, dtype, local: bool):
    """The original jina-embeddings-v3 checkpoint, natively, with the task's LoRA merged (``scoring/jina_original.py``)."""
    if local:
        files = jina_original.weight_files(Path(config.model).expanduser())
    else:
        files = jina_original.hub_weight_files(config.model, config.revision, local=False)
    model = jina_original.load(raw, files, config.task_adapter, dtype, config.attn_implementation)
    log.info("embedder %s: original jina-embeddings-v3 layout, task %s merged", config.model, config.task_adapter)
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
