"""The fingerprint of a scorer: its deciding settings and the content of every model file it reads.

A resumed run must never mix scores from two encoders: replacing ``model.safetensors`` in the same
folder between a kill and the rerun is a different scorer, although no setting changed. Local model
folders are identified by the digest of every file in them (config, tokenizer, weights, adapter
sub-folders); a Hub model by its resolved snapshot commit; heads by their file's digest.

Heads record the content digest of the encoder they were trained on (:func:`encoder_content`), so the
check that a head fits the scorer's encoder compares files, not folder names: a byte-identical copy of
the encoder elsewhere is the same encoder, a changed one in the same folder is not.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from spark_jql.config import ScorerConfig
from spark_jql.fingerprint import Fingerprint, decisive, file_digest
from spark_jql.scoring.hub import is_local, local_model_dir, resolve_head_file


def model_folder_digests(folder: Path, role: str) -> dict[str, str]:
    """``{role/relative path: digest}`` of every visible file under a model folder."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[f"{role}/{rel.as_posix()}"] = file_digest(path)
    return out


def encoder_folder(model: str, revision: str | None = None) -> Path | None:
    """The folder holding an encoder's files on this machine (a local path, or the Hub cache's snapshot); None if absent.

    Never downloads: a head's provenance is checked against what is here."""
    if is_local(model):
        folder = Path(model).expanduser()
        return folder if folder.is_dir() else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:  # not cached here (offline, or never downloaded)
        return None


def encoder_content(model: str, revision: str | None = None) -> str | None:
    """One digest of every file of the encoder (relative names and contents, not the folder's name); None if absent."""
    folder = encoder_folder(model, revision)
    if folder is None:
        return None
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _content_digest(str(folder.resolve()), stats)


@lru_cache(maxsize=16)
def _content_digest(folder: str, stats: tuple) -> str:  # keyed by the files' sizes and times: rehashed when one changes
    files = {k.removeprefix("encoder/"): v for k, v in model_folder_digests(Path(folder), "encoder").items()}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def encoder_identity(scorer: ScorerConfig) -> dict[str, str]:
    embedder = scorer.embedder
    if is_local(embedder.model):
        return model_folder_digests(Path(embedder.model).expanduser(), "encoder")
    folder, _ = local_model_dir(embedder)  # the Hub cache's snapshot folder is named by its commit
    return {"encoder": f"hub:{embedder.model}@{folder.name}"}


def scorer_fingerprint(scorer: ScorerConfig, text_column: str, with_encoder: bool = True,
                       with_heads: bool = True) -> Fingerprint:
    """Everything that decides a document's scores (or, without heads, its embedding)."""
    settings = decisive(scorer)
    if with_encoder:  # "auto" and 8192 that resolve alike are the same run (resolution errors surface where it loads)
        try:
            from spark_jql.scoring.models import resolve

            settings["embedder"] = decisive(resolve(scorer.embedder))
        except Exception:
            pass
    if not with_heads:
        settings.pop("heads", None)
        settings.pop("aggregate", None)
    settings["text_column"] = text_column
    files = encoder_identity(scorer) if with_encoder else {}
    if with_heads:
        for head in scorer.heads:
            files[f"head/{head.name}"] = file_digest(resolve_head_file(head))
    return Fingerprint(settings, files)
