"""SparkSession construction for local runs, tests and spark-submit."""

from __future__ import annotations

import os
import sys


def build_session(master: str | None = None, app_name: str = "spark_jql", conf: dict[str, str] | None = None):
    """Get or create a SparkSession; local masters run executors with this interpreter.

    Under spark-submit or on Databricks the existing session and the cluster's
    settings win; only ``conf`` entries are added.
    """
    from pyspark.sql import SparkSession

    if master is None or master.startswith("local"):
        # Python workers otherwise run whatever python3 is on PATH, often without our packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {
        "spark.python.worker.reuse": "true",  # one model load per Python worker, not per task
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
    }
    if master and master.startswith("local-cluster"):
        import tempfile

        settings["spark.worker.dir"] = tempfile.mkdtemp(prefix="spark_jql_worker_")
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_JQL_SPARK_LOG_LEVEL", "WARN"))
    return spark


def session_for(config) -> "SparkSession":  # noqa: F821 - pyspark is imported lazily
    """The session a job config asks for (``spark.master``, ``spark.app_name``, ``spark.conf``)."""
    return build_session(config.spark.master, config.spark.app_name, config.spark.conf)
