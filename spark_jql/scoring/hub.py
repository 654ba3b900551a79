"""Where models and heads come from: local paths first, the Hugging Face Hub otherwise.

A local path never touches the network. A Hub id is fetched through
huggingface_hub (which honours ``HF_HUB_OFFLINE`` and its cache); when it cannot
be reached the error says how to pre-download it or point at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from spark_jql.config import EmbedderConfig, HeadConfig
from spark_jql.errors import ModelNotAvailableError


def is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def looks_like_path(name: str) -> bool:
    """Hub ids are ``org/name``; anything rooted, relative or deeper is meant as a path."""
    return name.startswith(("/", "./", "../", "~", "file:")) or name.count("/") > 1 or "\\" in name


def require_local(name: str, what: str) -> None:
    if looks_like_path(name) and not is_local(name):
        raise ModelNotAvailableError(f"{what} {name!r} looks like a local path but does not exist")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _unreachable(what: str, repo_id: str, filename: str | None, err: Exception) -> ModelNotAvailableError:
    from huggingface_hub import constants

    target = f"{repo_id}/{filename}" if filename else repo_id
    download = f"hf download {repo_id}" + (f" {filename}" if filename else "")
    if offline():  # the cause is known: say where we looked instead of repeating huggingface_hub's message
        why = f"HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    else:
        why = f"it is not in the Hugging Face cache and the Hub could not be reached ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return ModelNotAvailableError(
        f"cannot load {what} {target!r}: {why}. Pre-download it (`{download}`, with the HF_HOME the job uses) "
        "or give a local path instead."
    )


SMALL_MODEL_FILES = ["*.json", "*.model", "*.txt", "*.py"]  # config, tokenizer, remote code: not the weights


def local_model_dir(embedder: EmbedderConfig) -> tuple[Path, bool]:
    """(folder holding the embedder's files, whether its weights are there too) without loading anything.

    A local path is used as it is. A Hub id is looked up in the Hugging Face cache; if it is not
    there, offline is an error saying how to fix it, online only its small files are fetched
    (the executors download the weights, as they would anyway).
    """
    name = embedder.model
    require_local(name, "embedder")
    if is_local(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelNotAvailableError(f"embedder {name!r} is a file; give the folder a model was saved to (save_pretrained)")
        return path, True
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=embedder.revision, local_files_only=True)), True
    except Exception as err:
        if offline():
            raise _unreachable("embedder", name, None, err) from None
    try:
        return Path(snapshot_download(name, revision=embedder.revision, allow_patterns=SMALL_MODEL_FILES)), False
    except Exception as err:
        raise _unreachable("embedder", name, None, err) from None


def resolve_head_file(head: HeadConfig) -> Path:
    """Local file for a head, downloading (or reading from the HF cache) when it lives on the Hub."""
    if head.path is not None:
        return Path(head.path).expanduser()
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(head.repo_id, head.filename, revision=head.revision))
    except Exception as err:  # offline, no network, 404, gated
        raise _unreachable(f"head {head.name!r} from", head.repo_id, head.filename, err) from None


def model_load_error(model: str, err: Exception) -> Exception:
    """Translate a transformers load failure for a Hub id into an actionable message."""
    if is_local(model):
        return err
    text = str(err).lower()
    network = any(s in text for s in ("offline", "connect", "resolve", "couldn't", "cannot find", "not found", "timed out"))
    if network or isinstance(err, OSError):
        return _unreachable("embedder", model, None, err)
    return err
