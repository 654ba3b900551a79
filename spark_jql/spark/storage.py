"""Small text artifacts (markers, manifest, thresholds.json, summary.json, report) on any filesystem.

Which paths are local is decided by spark_jql/paths.py; this module adds the one thing only the
session knows: whether a plain path means this machine's disk (the session's default filesystem).
Two routes, chosen per path, the same for classic and Spark Connect sessions:

* **local**: ``file:`` paths, the Databricks FUSE mounts (``/dbfs``, ``/Volumes``), and plain paths
  when the session's default filesystem is this machine's disk (a local master; a local Connect
  server). Plain files, written to a temporary name and renamed.
* **spark**: everything else (``s3://``, ``abfss://``, ``gs://``, ``dbfs:/``, ``hdfs://``, plain paths
  on a cluster). A classic session writes one file through the Hadoop FileSystem API, with the
  cluster's credentials. A Spark Connect client has no JVM: it writes through Spark (a folder
  holding one part file) and, where this machine sees that folder (a local server, a Databricks
  notebook's FUSE mounts), replaces it by the plain file; otherwise the artifact stays a folder
  and :func:`write_text` returns the part file's path, the file to open.

Readers accept both forms on both routes. ``SPARK_JQL_ARTIFACT_IO=local|spark`` forces a route
(``auto`` by default).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from spark_jql import paths
from spark_jql.errors import InputError
from spark_jql.paths import join as join_path  # noqa: F401 - the name callers import from here
from spark_jql.spark.session import connect_host, is_connect

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_ROUTE_CACHE: dict[int, bool] = {}


def local_path(path: str) -> Path:
    """The file a local-route path names (``file:`` prefixes and ``~`` resolved)."""
    return Path(paths.local_path(path))




def _default_fs_is_local(spark) -> bool:
    """Whether a scheme-less path means this machine's disk for ``spark`` (cached per session)."""
    key = id(spark)
    if key not in _ROUTE_CACHE:
        if is_connect(spark):
            master = _conf(spark, "spark.master") or ""
            default_fs = _conf(spark, "spark.hadoop.fs.defaultFS") or "file:///"
            local = connect_host(spark) in _LOCAL_HOSTS and master.startswith("local") and default_fs.startswith("file:")
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
    if paths.is_remote(path):
        return False
    if paths.scheme(path) == "file" or paths.is_fuse(path):
        return True
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
def path_not_found(err: Exception) -> bool:
    """The Spark error for a path that does not exist (its message differs between Spark versions)."""
    text = str(err)
    return "PATH_NOT_FOUND" in text or "Path does not exist" in text


def _with_files(spark, path: str, **options) -> list[dict]:
    """``{file, value}``: each file's text under ``path`` (Connect-safe).

    Spark's scans skip empty files, so the files come from the listing and their text from the scan
    (the listing's names may be URL-encoded, the scan's are not).
    """
    frame = spark.read.format("binaryFile").options(**options).load(path)
    texts = {paths.normalise(unquote(r["path"])): bytes(r["content"]).decode("utf-8")
             for r in frame.select("path", "content").collect()}
    return [{"file": f, "value": texts.get(paths.normalise(unquote(f)), "")} for f in sorted(frame.inputFiles())]


def _read_spark(spark, path: str) -> str:
    try:
        rows = _with_files(spark, path)
    except Exception as err:
        if path_not_found(err):
            raise InputError(f"file not found: {path}") from None
        raise
    if len(rows) > 1:
        raise InputError(f"{path} holds {len(rows)} files, expected one text artifact")
    if not rows:
        return ""
    in_folder = paths.split(unquote(rows[0]["file"]))[1] != paths.split(path)[1]
    return _strip_row_end(rows[0]["value"]) if in_folder else rows[0]["value"]


def _strip_row_end(text: str) -> str:
    """Spark's text writer ends each row with a newline; an artifact written that way (a folder) is one row."""
    return text[:-1] if text.endswith("\n") else text


def _write_spark(spark, path: str, text: str) -> str:
    """One file at ``path`` where the session allows it; the path of the file written (see the module docstring)."""
    if not is_connect(spark):
        _write_hadoop(spark, path, text)
        return path
    frame = spark.createDataFrame([(text,)], "value string")
    frame.coalesce(1).write.mode("overwrite").option("compression", "none").text(path)
    return _as_single_file(spark, path, text)


def _write_hadoop(spark, path: str, text: str) -> None:
    """Through the JVM's Hadoop FileSystem (any filesystem the cluster reaches): a temporary name, then renamed."""
    hadoop_fs = spark._jvm.org.apache.hadoop.fs
    target = hadoop_fs.Path(path)
    fs = target.getFileSystem(spark._jsc.hadoopConfiguration())
    tmp = hadoop_fs.Path(target.getParent(), f".{target.getName()}.tmp")
    stream = fs.create(tmp, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    if fs.exists(target):
        fs.delete(target, True)  # a previous artifact, possibly the folder form
    if not fs.rename(tmp, target):
        raise OSError(f"cannot rename {tmp} to {path}")


def _as_single_file(spark, path: str, text: str) -> str:
    """Replace the folder Spark wrote by one file when this machine sees it (same filesystem); else the part file's path."""
    view = paths.local_view(path)
    if view is not None and Path(view).is_dir() and len(_visible_files(Path(view))) == 1:
        _write_local(view, text)  # replaces the folder
        return path
    return spark.read.text(path).inputFiles()[0]


def _exists_spark(spark, path: str) -> bool:
    try:
        spark.read.format("text").load(path).schema  # analysed (and the path checked) without a job
    except Exception as err:
        if path_not_found(err):
            return False
        raise
    return True


# -- the API -----------------------------------------------------------------------
def write_text(spark, path: str, text: str) -> str:
    """Write a small text artifact (replacing any previous one); returns the path of the file to open."""
    if is_local(spark, path):
        _write_local(path, text)
        return path
    return _write_spark(spark, path, text)


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
    try:
        rows = _with_files(spark, folder, recursiveFileLookup="true")
    except Exception as err:
        if path_not_found(err):
            return {}
        raise
    prefix = urlparse(folder).path.rstrip("/") + "/"
    out: dict[str, str] = {}
    for file, value in ((r["file"], r["value"]) for r in rows):
        name, _, inner = unquote(urlparse(file).path).split(prefix, 1)[-1].partition("/")
        if name in out:
            raise InputError(f"{join_path(folder, name)} holds more than one file, expected one text artifact")
        out[name] = _strip_row_end(value) if inner else value  # a folder written by Spark, or one file
    return dict(sorted(out.items()))
