"""Where a path lives, decided in one place: config checks, input listing and artifacts all ask here.

* **local**: plain paths (relative or absolute), ``file:`` URIs, and Databricks' FUSE mounts
  ``/dbfs/...`` and ``/Volumes/...`` (plain paths, read and written as files on the driver);
* **remote**: any other scheme: ``s3://``, ``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``,
  ``dbfs:/`` (``dbfs:/Volumes/...`` included).

Pure string logic, no Spark: on a cluster whose default filesystem is not this machine's disk a
plain path still means that filesystem to Spark; spark/storage.py asks the session for that.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import unquote

FUSE_ROOTS = ("/dbfs", "/Volumes")  # Databricks mounts DBFS and Unity Catalog volumes here on the driver
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: "C:" is a drive


def scheme(path: str) -> str | None:
    """``s3``, ``dbfs``, ``file``...; ``None`` for a plain path."""
    match = _SCHEME.match(path.strip())
    return match.group(1).lower() if match else None


def is_remote(path: str) -> bool:
    """True for a URI with a scheme other than ``file:`` (see the module docstring)."""
    found = scheme(path)
    return found is not None and found != "file"


def is_fuse(path: str) -> bool:
    """A plain path under a Databricks FUSE mount: a local file whatever the cluster's default filesystem."""
    plain = local_path(path) if not is_remote(path) else ""
    return any(plain == root or plain.startswith(root + "/") for root in FUSE_ROOTS)


def local_path(path: str) -> str:
    """A local path as this machine's file API takes it: ``file:`` stripped (and unquoted), ``~`` expanded."""
    path = path.strip()
    if scheme(path) == "file":
        rest = unquote(path[len("file:"):])
        return "/" + rest.lstrip("/") if rest.startswith("/") else rest
    return os.path.expanduser(path)


def split(path: str) -> tuple[str, str]:
    """(filesystem, absolute path on it): ``('', '/abs/x')`` locally, ``('s3://bucket', '/x')``, ``('dbfs:', '/x')``."""
    path = path.strip()
    if not is_remote(path):
        return "", os.path.realpath(local_path(path)) if path else ""
    name = scheme(path)
    rest = path[len(name) + 1:]
    if rest.startswith("//"):
        authority, _, key = rest[2:].partition("/")
        root = f"{name}://{authority}" if authority else f"{name}:"  # dbfs:///x is dbfs:/x
    else:
        root, key = f"{name}:", rest
    return root, posixpath.normpath("/" + key.lstrip("/"))  # normpath keeps a leading "//"


def normalise(path: str) -> str:
    """One spelling per file: ``dir/../dir/a.jsonl``, ``./dir/a.jsonl`` and ``file:///.../a.jsonl`` agree."""
    root, key = split(path)
    return root + key


def join(root: str, *parts: str) -> str:
    """``root/part/...`` on any filesystem (no normalisation: the caller's spelling is kept)."""
    return "/".join([root.rstrip("/"), *parts])


def is_inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it, on the same filesystem (lexical)."""
    (fs, key), (folder_fs, folder_key) = split(path), split(folder)
    return fs == folder_fs and bool(key) and (key == folder_key or key.startswith(folder_key.rstrip("/") + "/"))


def is_filesystem_root(path: str) -> bool:
    """``''``, ``/``, ``file:///``, ``s3://bucket/``...: places where replacing an output is never what was meant."""
    return not path.strip() or split(path)[1] in ("/", "")


def local_view(path: str) -> str | None:
    """Where this machine would see ``path`` as a file, if anywhere: a local path, or ``dbfs:/`` on its FUSE mount."""
    if not is_remote(path):
        return local_path(path)
    fs, key = split(path)
    if fs == "dbfs:":
        return key if is_fuse(key) else "/dbfs" + key
    return None
