"""Small text artifacts (markers, manifest, thresholds.json, summary.json, report) on any filesystem.

Two routes, chosen per path, the same for classic and Spark Connect sessions:

* **local**: ``file:`` paths, and scheme-less paths when the session's default
  filesystem is this machine's disk (a local master; a local Connect server).
  Plain files, written to a temporary name and renamed.
* **spark**: everything else (``s3://``, ``abfss://``, ``gs://``, ``dbfs:/``,
  ``hdfs://``, scheme-less paths on a cluster). Written and read by Spark itself
  (``DataFrame.write.text`` / ``spark.read.text(wholetext=True)``), so it works
  wherever the cluster can reach, with the cluster's credentials, also when the
  client is a remote Spark Connect client without any. Such an artifact is a
  folder with one text file (``thresholds.json/part-00000-….txt``).

Readers accept both forms on both routes. ``SPARK_JQL_ARTIFACT_IO=local|spark``
forces a route (``auto`` by default).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from spark_jql.errors import InputError
from spark_jql.spark.session import is_connect, remote_url

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_ROUTE_CACHE: dict[int, bool] = {}


def join_path(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _scheme(path: str) -> str | None:
    """``s3``, ``dbfs``, ``file``...; ``None`` for a plain path (a one-letter "scheme" is a drive)."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", path)
    return match.group(1).lower() if match else None


def local_path(path: str) -> Path:
    """The file a local-route path names (``file:`` prefixes and ``~`` resolved)."""
    if path.startswith("file://"):
        return Path(path[len("file://"):])
    if path.startswith("file:"):
        return Path(path[len("file:"):])
    return Path(path).expanduser()


def _default_fs_is_local(spark) -> bool:
    """Whether a scheme-less path means this machine's disk for ``spark`` (cached per session)."""
    key = id(spark)
    if key not in _ROUTE_CACHE:
        if is_connect(spark):
            url = remote_url() or ""
            host = "localhost" if url.startswith("local") else (urlparse(url).hostname or "")
            master = _conf(spark, "spark.master") or ""
            default_fs = _conf(spark, "spark.hadoop.fs.defaultFS") or "file:///"
            local = host in _LOCAL_HOSTS and master.startswith("local") and default_fs.startswith("file:")
        else:
            hadoop = spark.sparkContext._jsc.hadoopConfiguration()
            local = str(hadoop.get("fs.defaultFS", "file:///")).startswith("file:")
        _ROUTE_CACHE[key] = local
    return _ROUTE_CACHE[key]


def _conf(spark, key: str) -> str | None:
    try:
        return spark.conf.get(key, None)
    except Exception:  # some managed services hide settings
        return None


def is_local(spark, path: str) -> bool:
    """True when ``path`` is read and written as a plain local file (see the module docstring)."""
    forced = os.environ.get("SPARK_JQL_ARTIFACT_IO", "auto").lower()
    if forced in ("local", "spark"):
        return forced == "local"
    scheme = _scheme(path)
    if scheme is not None:
        return scheme == "file"
    return _default_fs_is_local(spark)


# -- local route ----------------------------------------------------------------
def _visible_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith((".", "_")))


def _read_local(path: str) -> str:
    target = local_path(path)
    if target.is_dir():  # written by the spark route: a folder with one text file
        files = _visible_files(target)
        if len(files) != 1:
            raise InputError(f"{path} is a folder with {len(files)} data files, expected one text artifact")
        return _strip_row_end(files[0].read_text(encoding="utf-8"))
    if not target.is_file():
        raise InputError(f"file not found: {path}")
    return target.read_text(encoding="utf-8")


def _write_local(path: str, text: str) -> None:
    target = local_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")  # two writers never share it
    tmp.write_text(text, encoding="utf-8")
    if target.is_dir():
        shutil.rmtree(target)
    tmp.replace(target)


# -- spark route ----------------------------------------------------------------
def _is_missing(err: Exception) -> bool:
    text = str(err)
    return "PATH_NOT_FOUND" in text or "Path does not exist" in text


def _read_spark(spark, path: str) -> str:
    try:
        rows = spark.read.text(path, wholetext=True).collect()
    except Exception as err:
        if _is_missing(err):
            raise InputError(f"file not found: {path}") from None
        raise
    if len(rows) > 1:
        raise InputError(f"{path} holds {len(rows)} files, expected one text artifact")
    return _strip_row_end(rows[0][0] if rows else "")


def _strip_row_end(text: str) -> str:
    """Spark's text writer ends each row with a newline; an artifact is one row."""
    return text[:-1] if text.endswith("\n") else text


def _write_spark(spark, path: str, text: str) -> None:
    frame = spark.createDataFrame([(text,)], "value string")
    frame.coalesce(1).write.mode("overwrite").option("compression", "none").text(path)


def _exists_spark(spark, path: str) -> bool:
    try:
        spark.read.format("text").load(path).schema  # analysed (and the path checked) without a job
    except Exception as err:
        if _is_missing(err):
            return False
        raise
    return True


# -- the API -----------------------------------------------------------------------
def write_text(spark, path: str, text: str) -> None:
    """Write a small text artifact (replacing any previous one)."""
    (_write_local if is_local(spark, path) else lambda p, t: _write_spark(spark, p, t))(path, text)


def read_text(spark, path: str) -> str:
    """A small text artifact's content; :class:`InputError` naming the path when it is absent."""
    return _read_local(path) if is_local(spark, path) else _read_spark(spark, path)


def exists(spark, path: str) -> bool:
    return local_path(path).exists() if is_local(spark, path) else _exists_spark(spark, path)


def clear(spark, path: str) -> None:
    """Remove everything under ``path`` (no error if absent).

    The spark route has no delete: it overwrites ``path`` with an empty dataset,
    which leaves an empty folder (Spark readers and :func:`read_texts` see nothing there).
    """
    if is_local(spark, path):
        target = local_path(path)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        return
    if _exists_spark(spark, path):
        spark.createDataFrame([], "value string").write.mode("overwrite").text(path)


def read_texts(spark, folder: str) -> dict[str, str]:
    """Every artifact directly under ``folder`` by name, in one pass (an absent folder gives ``{}``)."""
    if is_local(spark, folder):
        root = local_path(folder)
        if not root.is_dir():
            return {}
        names = [p.name for p in root.iterdir() if not p.name.startswith((".", "_"))]
        return {name: _read_local(str(root / name)) for name in sorted(names)}
    from pyspark.sql import functions as F

    try:
        rows = (
            spark.read.option("recursiveFileLookup", "true").text(folder, wholetext=True)
            .select(F.input_file_name().alias("file"), "value").collect()
        )
    except Exception as err:
        if _is_missing(err):
            return {}
        raise
    prefix = urlparse(folder).path.rstrip("/") + "/"
    out: dict[str, str] = {}
    for file, value in rows:
        name = unquote(urlparse(file).path).split(prefix, 1)[-1].split("/", 1)[0]
        if name in out:
            raise InputError(f"{join_path(folder, name)} holds more than one file, expected one text artifact")
        out[name] = _strip_row_end(value)
    return dict(sorted(out.items()))


def list_files(spark, pattern: str) -> list[str]:
    """Files matching a path or glob (a folder gives the data files in it), sorted; ``[]`` if none.

    Local patterns are expanded by Python; others by Spark's own file listing, so the
    cluster's filesystems and credentials apply on classic and Connect sessions alike.
    """
    if is_local(spark, pattern):
        import glob

        return sorted(glob.glob(str(local_path(pattern))))
    try:
        return sorted(spark.read.format("binaryFile").load(pattern).inputFiles())
    except Exception as err:
        if _is_missing(err):
            return []
        raise
