"""What decides a stage's output, by construction: settings minus the ones that only say how to run, plus files.

A resumed unit must have been made exactly as this run would make it. Rather than a hand-kept list
of settings that *decide* the output (which a new field silently escapes), settings say the opposite:
a field declared with :func:`runtime` (device, batch sizes, retries, concurrency, endpoint addresses)
is left out; everything else, including any field added later, is in. Files whose bytes decide the
output (encoder weights, tokenizer, heads, prompts) enter by content, not by name or date, so a file
replaced in place is seen and a byte-identical copy elsewhere is not a change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

RUNTIME_KEY = "spark_jql_runtime"
FULL_HASH_LIMIT = 256 * 2**20  # files up to 256 MiB are hashed whole
SAMPLE_CHUNKS, CHUNK = 64, 2**20  # larger ones: 64 spread 1 MiB samples, the size and the safetensors header


def runtime(default: Any = ..., **kwargs) -> Any:
    """A pydantic ``Field`` for a setting that changes how a stage runs, never what it writes."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {}, **{RUNTIME_KEY: True})
    return Field(default, json_schema_extra=extra, **kwargs)


def _is_runtime(model: type[BaseModel], name: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(RUNTIME_KEY))


def decisive(value: Any) -> Any:
    """``value`` as plain JSON data without its runtime fields (recursively through models, lists, dicts)."""
    if isinstance(value, BaseModel):
        return {name: decisive(getattr(value, name)) for name in type(value).model_fields
                if not _is_runtime(type(value), name)}
    if isinstance(value, dict):
        return {str(k): decisive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [decisive(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def file_digest(path: str | os.PathLike) -> str:
    """Content identity of a file: sha256 of its bytes (of its size, header and spread samples above 256 MiB)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(4 * CHUNK), b""):
                digest.update(block)
            return digest.hexdigest()
        digest.update(f"size={size}".encode())
        for k in range(SAMPLE_CHUNKS):
            f.seek((size - CHUNK) * k // (SAMPLE_CHUNKS - 1))
            digest.update(f.read(CHUNK))
    return "sampled:" + digest.hexdigest()


class Fingerprint:
    """Settings and file digests that decide a stage's output; comparable, with a message naming what changed."""

    def __init__(self, settings: dict, files: dict[str, str] | None = None):
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        self.files = dict(sorted((files or {}).items()))

    def as_dict(self) -> dict:
        return {"settings": self.settings, "files": self.files, "hash": self.hash}

    @property
    def hash(self) -> str:
        text = json.dumps({"settings": self.settings, "files": self.files}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def difference(self, previous: dict | None) -> str | None:
        """None when ``previous`` (an ``as_dict``) made the same output; else what changed, named."""
        if not isinstance(previous, dict) or "settings" not in previous:
            return "the previous run recorded no fingerprint (an older version of spark_jql)"
        changed = _first_difference(previous.get("settings"), self.settings, "")
        if changed:
            return f"setting {changed} changed"
        before, now = previous.get("files") or {}, self.files
        for role in sorted(set(before) | set(now)):
            if before.get(role) != now.get(role):
                what = "is new" if role not in before else "is gone" if role not in now else "has other contents"
                return f"file {role} {what}"
        return None


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}{key} ({'added' if key not in a else 'removed'})"
            found = _first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):  # judges.0.model, not the whole list
        return next((found for i, (x, y) in enumerate(zip(a, b)) if (found := _first_difference(x, y, f"{where}{i}."))), None)
    if a != b:
        return f"{where.rstrip('.')} ({json.dumps(a, default=str)[:80]} -> {json.dumps(b, default=str)[:80]})"
    return None
