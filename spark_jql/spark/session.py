"""SparkSession construction for local runs, tests, spark-submit and Spark Connect.

One code path serves both session kinds: a classic session (spark-submit, a job
cluster, ``local[*]``) and a Spark Connect session (``SPARK_REMOTE=sc://...``,
Databricks shared/serverless compute and Databricks Connect). Code that needs the
JVM (``sparkContext``, accumulators, the status tracker) asks :func:`is_connect`
first and has a Connect-safe alternative.
"""

from __future__ import annotations

import logging
import os
import sys
from urllib.parse import urlparse

from spark_jql import interrupts
from spark_jql.spark import spark_log

log = logging.getLogger(__name__)


def is_connect(spark) -> bool:
    """True for a Spark Connect session (no sparkContext, RDDs, accumulators or ``_jvm`` there)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def connect_host(spark) -> str | None:
    """Host name of a Connect session's server, from the session itself (``builder.remote(url)`` sets no env var)."""
    try:
        builder = spark.client._builder
        host = getattr(builder, "host", None) or getattr(getattr(builder, "url", None), "hostname", None)
    except Exception:  # a client without these internals: fall back to SPARK_REMOTE
        host = None
    url = remote_url() or ""
    return host or ("localhost" if url.startswith("local") else urlparse(url).hostname)


def remote_url(master: str | None = None) -> str | None:
    """The Spark Connect URL in use: ``SPARK_REMOTE``, or a master given as ``sc://...``."""
    if master and master.startswith("sc://"):
        return master
    return os.environ.get("SPARK_REMOTE") or None


def build_session(master: str | None = None, app_name: str = "spark_jql", conf: dict[str, str] | None = None):
    """Get or create a SparkSession; local masters run executors with this interpreter.

    Under spark-submit, on Databricks or with ``SPARK_REMOTE`` set, the existing
    session (or the Connect server) and the cluster's settings win: ``master`` is
    then ignored and only ``conf`` entries the session accepts at runtime are added
    (on Connect, static settings belong to the server's configuration).
    """
    from pyspark.sql import SparkSession

    remote = remote_url(master)
    if remote is None and (master is None or master.startswith("local")):
        # Python workers otherwise run whatever python3 is on PATH, often without our packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    if remote is not None:
        if master and not master.startswith("sc://"):
            log.info("spark.master=%s ignored: Spark Connect session at %s", master, remote)
        builder = builder.remote(remote)
    elif master:
        builder = builder.master(master)
    builder = builder.appName(app_name)
    settings = {"spark.sql.session.timeZone": "UTC"}
    if remote is None:  # static settings: a Connect server has its own
        settings["spark.python.worker.reuse"] = "true"  # one model load per Python worker, not per task
        settings["spark.ui.showConsoleProgress"] = "false"
    if remote is None and master and master.startswith("local-cluster"):
        import tempfile

        settings["spark.worker.dir"] = tempfile.mkdtemp(prefix="spark_jql_worker_")
    settings.update(conf or {})
    if remote is None:
        settings = spark_log.launch_settings(settings)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    interrupts.reassert()  # the CLI's one-line Ctrl-C, not pyspark's handler (which calls the JVM from inside it)
    if not is_connect(spark):
        spark_log.apply(spark)
        spark.sparkContext.setLogLevel(os.environ.get("SPARK_JQL_SPARK_LOG_LEVEL", "WARN"))
    return spark


def session_for(config) -> "SparkSession":  # noqa: F821 - pyspark is imported lazily
    """The session a job config asks for (``spark.master``, ``spark.app_name``, ``spark.conf``)."""
    return build_session(config.spark.master, config.spark.app_name, config.spark.conf)
