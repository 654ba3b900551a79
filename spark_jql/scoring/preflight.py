"""Driver-side checks of a scorer configuration, cheap enough to run before every scoring stage.

Loading arctic-embed-m-v2.0 costs seconds and gigabytes, so the encoder is not run here: its
folder is checked file by file (config.json, tokenizer files, safetensors headers, which
``safe_open`` validates against the file size without reading the tensors) and its tokenizer
is compared with its embedding table. Heads are tiny: they are loaded and run on a probe.
A fault raises a ``SparkJQLError`` whose one-line message names the file and the fix, so it
is found on the driver instead of as an executor traceback repeated by every task attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from spark_jql.config import EmbedderConfig, ScorerConfig
from spark_jql.errors import CheckpointError, ModelFilesError, first_line
from spark_jql.scoring.hub import local_model_dir

# Any one of these makes a tokenizer transformers can load (fast JSON, sentencepiece, WordPiece, BPE).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json")
# A tokenizer this much smaller than the embedding table is another model's (models pad the table a little).
MIN_VOCAB_SHARE = 0.5
PROBE_TEXT = "Quality data across languages: Qualitätsdaten über Sprachen hinweg."


@dataclass(frozen=True)
class ScorerCheck:
    """What the preflight found; the stage summary may report it."""

    model_dir: str
    hidden_size: int | None
    embedding_rows: int | None
    tokenizer_size: int
    heads: tuple[str, ...]


def check_scorer(config: ScorerConfig, with_heads: bool = True) -> ScorerCheck:
    """Check the embedder's files and tokenizer and (unless ``with_heads=False``, as for ``embed``) every head."""
    return _check_scorer(config.model_dump_json(), with_heads)


@lru_cache(maxsize=8)
def _check_scorer(config_json: str, with_heads: bool = True) -> ScorerCheck:
    config = ScorerConfig.model_validate_json(config_json)
    model_dir, has_weights = local_model_dir(config.embedder)
    settings = _model_settings(model_dir)
    hidden = settings.get("hidden_size") if isinstance(settings.get("hidden_size"), int) else None
    vocab = settings.get("vocab_size") if isinstance(settings.get("vocab_size"), int) else None
    _check_model_config(model_dir, config.embedder)
    rows = _check_weights(model_dir, vocab, hidden) if has_weights else vocab
    size = _check_tokenizer(model_dir, config.embedder, rows)
    names = _check_heads(config, hidden) if with_heads else ()
    return ScorerCheck(str(model_dir), hidden, rows, size, names)


def _model_settings(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelFilesError(f"embedder folder {model_dir} has no config.json: it is not a saved Hugging Face model")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFilesError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(settings, dict):
        raise ModelFilesError(f"{path}: expected a JSON object, got {type(settings).__name__}")
    return settings


def _check_model_config(model_dir: Path, embedder: EmbedderConfig) -> None:
    """transformers can read config.json (an unknown model type needs remote code, or a newer transformers)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(model_dir), trust_remote_code=embedder.trust_remote_code, local_files_only=True)
    except Exception as err:
        hint = "; a model with its own code needs scorer.embedder.trust_remote_code=true" if "trust_remote_code" in str(err) else ""
        raise ModelFilesError(
            f"{model_dir / 'config.json'}: transformers cannot read it ({type(err).__name__}: {first_line(err)}){hint}"
        ) from None


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ModelFilesError(f"{index}: unreadable shard index ({type(err).__name__}: {err})") from None
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise ModelFilesError(f"{index} lists shard(s) {missing} that are not in {model_dir} (an interrupted download?)")
        return [model_dir / s for s in shards]
    if (model_dir / "model.safetensors").is_file():
        return [model_dir / "model.safetensors"]
    return []


def _check_weights(model_dir: Path, vocab_size: int | None, hidden: int | None) -> int | None:
    """Validate every safetensors header; return the embedding table's rows (None if unknown)."""
    from safetensors import safe_open

    files = _weight_files(model_dir)
    if not files:
        if any((model_dir / n).is_file() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
            return vocab_size  # pickled weights: no cheap header to check
        raise ModelFilesError(
            f"embedder folder {model_dir} has no weights (model.safetensors, its shard index, or pytorch_model.bin); "
            "an interrupted download or a copy of the config only?"
        )
    shapes: dict[str, list[int]] = {}
    for path in files:
        try:
            with safe_open(str(path), "pt") as f:  # reads and checks the header only
                shapes.update({k: list(f.get_slice(k).get_shape()) for k in f.keys()})
        except Exception as err:
            raise ModelFilesError(
                f"{path} is corrupt or truncated ({type(err).__name__}: {first_line(err)}); download or copy it again"
            ) from None
    if vocab_size is None or hidden is None:
        return vocab_size
    if not any(s == [vocab_size, hidden] for s in shapes.values()):
        raise ModelFilesError(
            f"{model_dir}: config.json says vocab_size {vocab_size} x hidden_size {hidden}, but no tensor in "
            f"{[p.name for p in files]} has that shape: the weights and config.json belong to different models"
        )
    return vocab_size


def _check_tokenizer(model_dir: Path, embedder: EmbedderConfig, rows: int | None) -> int:
    present = [n for n in TOKENIZER_FILES if (model_dir / n).is_file()]
    if not present:
        raise ModelFilesError(
            f"embedder folder {model_dir} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); "
            "transformers would build an empty tokenizer that turns every word into <unk>. "
            "Save the model's tokenizer beside it (tokenizer.save_pretrained)"
        )
    from spark_jql.scoring.tokenization import load_tokenizer

    try:  # the tokenizer the embedder runs (tokenizer.json verbatim where present)
        tokenizer = load_tokenizer(str(model_dir), None, local=True, trust_remote_code=embedder.trust_remote_code)
        ids = tokenizer(PROBE_TEXT)["input_ids"]
    except Exception as err:
        raise ModelFilesError(f"cannot load the tokenizer in {model_dir} ({type(err).__name__}: {first_line(err)})") from None
    size = len(tokenizer)
    if rows is not None and (size > rows or max(ids) >= rows):
        raise ModelFilesError(
            f"the tokenizer in {model_dir} has {size} tokens but the model's embedding table has {rows} rows: "
            "token ids would index past it; the tokenizer belongs to another model"
        )
    if rows is not None and size < MIN_VOCAB_SHARE * rows:
        raise ModelFilesError(
            f"the tokenizer in {model_dir} has {size} tokens but the model's embedding table has {rows} rows: "
            f"it is not this model's tokenizer (files found: {', '.join(present)})"
        )
    return size


def _check_heads(config: ScorerConfig, hidden: int | None) -> tuple[str, ...]:
    import torch

    from spark_jql.scoring.heads import HeadSet, check_provenance, load_head_file
    from spark_jql.scoring.hub import resolve_head_file
    from spark_jql.scoring.models import resolve

    heads = [load_head_file(resolve_head_file(h), h.name) for h in config.heads]
    embedder = resolve(config.embedder)
    check_provenance(heads, embedder.model, embedder.pooling, embedder.revision)  # here, not first on every executor
    for head, cfg in zip(heads, config.heads):
        probe = torch.nn.functional.normalize(torch.randn(4, head.input_dim, generator=torch.Generator().manual_seed(0)), dim=-1)
        out = HeadSet([head])(probe)
        if not torch.isfinite(out).all():
            source = cfg.path or f"{cfg.repo_id}/{cfg.filename}"
            raise CheckpointError(f"head {head.name!r} ({source}) gives non-finite scores on a probe: its weights hold NaN or inf")
    head_set = HeadSet(heads)
    if hidden is not None:
        head_set.check_input_dim(hidden, config.embedder.model)
    return tuple(head_set.names)

