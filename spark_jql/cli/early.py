"""Checks that need no Spark, made before the JVM starts (7-14 s): local inputs that match nothing, and the
outputs of earlier stages that thresholds and filter read. Only for paths the driver sees as Spark will: ``file:``
URIs, and plain paths with a local master (under spark-submit a plain path may mean the cluster's filesystem).
Spark's own checks stay; these only say the same thing sooner."""

from __future__ import annotations

import glob
import os

from spark_jql import paths
from spark_jql.config import JobConfig
from spark_jql.errors import InputError
from spark_jql.layout import OutputLayout

_GLOB = set("*?[")


# Set where a plain path may mean another filesystem: spark-submit's driver, Databricks, Connect, a Hadoop client.
CLUSTER_ENV = ("PYSPARK_GATEWAY_PORT", "DATABRICKS_RUNTIME_VERSION", "SPARK_REMOTE", "HADOOP_CONF_DIR", "YARN_CONF_DIR")


def _local_master(config: JobConfig) -> bool:
    """A local session this process starts itself: ``local[...]``, or no master and nothing that says cluster."""
    if any(os.environ.get(name) for name in CLUSTER_ENV):
        return False
    master = config.spark.master
    return master is None or master.startswith("local")


def checkable(config: JobConfig, path: str) -> bool:
    """True where the driver's file system answers for ``path`` as Spark would."""
    if paths.is_remote(path) or "{" in path:  # Hadoop's {a,b} globs: Python's glob does not read them
        return False
    return paths.scheme(path) == "file" or _local_master(config)


def inputs(config: JobConfig) -> None:
    """annotate, run: each local io.input pattern matches something (the message Spark's listing would give)."""
    if config.io.input_table is not None:
        return
    if not config.io.input:
        raise InputError("no input given: set io.input (a path or glob, parquet or JSON lines) or io.input_table")
    for pattern in config.io.input:
        if not checkable(config, pattern):
            continue
        local = paths.local_path(pattern)
        found = glob.glob(local) if _GLOB & set(local) else [local] if os.path.exists(local) else []
        if not found:
            raise InputError(f"input {pattern!r} matches no file")


def earlier_outputs(config: JobConfig, stage: str) -> None:
    """thresholds, filter: scored/ (and for filter, thresholds.json) are there."""
    layout = OutputLayout(config.io.output).job_paths()
    th = layout["thresholds"]
    if stage == "filter" and checkable(config, th) and os.path.isfile(paths.local_path(th)):
        from spark_jql.spark.preflight import thresholds_fit
        from spark_jql.thresholds import Thresholds

        with open(paths.local_path(th), encoding="utf-8", errors="replace") as f:  # a tampered file, a quantile it
            thresholds_fit(Thresholds.from_json(f.read(), th), th, config)   # lacks: one line naming it, no JVM
    scored = layout["scored"]
    if checkable(config, scored) and not os.path.isdir(paths.local_path(scored)):
        raise InputError(f"no scored output at {scored}: {stage} reads <io.output>/scored/ (not io.input); "
                         "run annotate (or run) first, or point io.output at a finished run")
    if stage == "filter" and checkable(config, th) and not os.path.exists(paths.local_path(th)):
        raise InputError(f"no thresholds at {th}: filter reads <io.output>/thresholds.json; run thresholds first")
