"""The tokenizer exactly as JQL ran it: the checkpoint's ``tokenizer.json``, verbatim.

JQL ran transformers 4's fast tokenizer, i.e. the pipeline stored in ``tokenizer.json``. transformers 5's
``XLMRobertaTokenizer`` (what ``AutoTokenizer`` picks for the three JQL embedders' ``tokenizer_config.json``)
rebuilds the pipeline from the vocabulary instead: it keeps a ``Precompiled`` charsmap but drops
``Replace(" {2,}", " ")`` and any other normaliser and pre-tokenises with WhitespaceSplit+Metaspace, so
some documents get other ids. Wherever a model ships ``tokenizer.json`` it is loaded as it is
(``PreTrainedTokenizerFast(tokenizer_file=...)``), with the special tokens and ``model_max_length`` from the
checkpoint's ``tokenizer_config.json`` / ``special_tokens_map.json``; ``AutoTokenizer`` only otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _hub_file(model: str, name: str, revision: str | None, local_only: bool) -> Path | None:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(model, name, revision=revision, local_files_only=local_only))
    except Exception:  # noqa: BLE001 - absent from the repo (or unreachable: AutoTokenizer reports that)
        return None


def _find(model: str, name: str, revision: str | None, local: bool) -> Path | None:
    if local:
        path = Path(model).expanduser() / name
        return path if path.is_file() else None
    return _hub_file(model, name, revision, local_only=False)


def _token(value) -> str | None:
    """A special token as written in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_settings(model: str, revision: str | None, local: bool) -> dict:
    """Special tokens and ``model_max_length`` from the checkpoint's tokenizer_config.json and special_tokens_map.json."""
    settings: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins where both say
        path = _find(model, name, revision, local)
        if path is None:
            continue
        data = json.loads(path.read_text())
        for key in _SPECIALS:
            if _token(data.get(key)):
                settings[key] = _token(data[key])
        if name == "tokenizer_config.json" and isinstance(data.get("model_max_length"), (int, float)):
            settings["model_max_length"] = int(data["model_max_length"]) if data["model_max_length"] < 1e12 else None
    return {k: v for k, v in settings.items() if v is not None}


def load_tokenizer(model: str, revision: str | None, local: bool, trust_remote_code: bool = False):
    """``tokenizer.json`` verbatim when the checkpoint has one, else ``AutoTokenizer``."""
    path = _find(model, TOKENIZER_FILE, revision, local)
    if path is None:
        from transformers import AutoTokenizer

        log.info("%s has no %s: AutoTokenizer", model, TOKENIZER_FILE)
        return AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code,
                                             local_files_only=local)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(path), **tokenizer_settings(model, revision, local))
