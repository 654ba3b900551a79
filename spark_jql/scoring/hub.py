"""Where models and heads come from: local paths first, the Hugging Face Hub otherwise.

A local path never touches the network. A Hub id is fetched through
huggingface_hub (which honours ``HF_HUB_OFFLINE`` and its cache); when it cannot
be reached the error says how to pre-download it or point at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from spark_jql.config import HeadConfig
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
    target = f"{repo_id}/{filename}" if filename else repo_id
    mode = "HF_HUB_OFFLINE is set" if offline() else "the Hub could not be reached"
    download = f"huggingface-cli download {repo_id}" + (f" {filename}" if filename else "")
    return ModelNotAvailableError(
        f"cannot load {what} {target!r}: it is not a local path, not in the Hugging Face cache, and {mode} "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"Pre-download it (`{download}`) or give a local path instead."
    )


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
