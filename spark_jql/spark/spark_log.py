"""Spark's own log lines (the JVM's log4j) to a file, so the command line's console holds only spark-jql's lines.

A failed Spark job logs its stack traces (a few hundred lines) before spark-jql prints the one line that says
what is wrong; the CLI sends them to a file instead (``SPARK_JQL_SPARK_LOG``, by default a file in the temp
folder; ``-vv`` keeps them on the console), named at ``-v``. A local JVM started by this process gets the file from its start (no start-up lines
either); a session that already runs (spark-submit, a notebook) is reconfigured when spark-jql takes it.
Spark Connect sessions log on their server: nothing to do here. Library users keep Spark's own logging.
"""

from __future__ import annotations

import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "SPARK_JQL_SPARK_LOG"  # set (the CLI sets it unless -vv): Spark's log lines go to this file


@lru_cache(maxsize=4)
def _log4j_config(path: str) -> str:
    """A log4j2 properties file that sends every logger to ``path``; its URI."""
    config = Path(tempfile.mkdtemp(prefix="spark_jql_log4j_")) / "log4j2.properties"
    config.write_text(
        "status = error\n"
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.file.ref = file\n"
        "appender.file.type = File\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {Path(path).resolve().as_posix()}\n"
        "appender.file.append = true\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex\n"
    )
    return config.as_uri()


def launch_settings(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` plus the JVM option that makes a JVM this process starts log to the file (when ``ENV`` is set)."""
    path = os.environ.get(ENV)
    if not path:
        return conf
    option = f"-Dlog4j2.configurationFile={_log4j_config(path)}"
    key = "spark.driver.extraJavaOptions"
    return {**conf, key: f"{conf[key]} {option}" if conf.get(key) else option}


def apply(spark) -> None:
    """Reconfigure a running classic session's log4j to the file (when ``ENV`` is set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        jvm = spark.sparkContext._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.reconfigure(jvm.java.net.URI(_log4j_config(path)))
    except Exception as err:  # another logging backend: Spark's lines stay on the console
        log.warning("could not send Spark's log to %s: %s", path, (str(err).splitlines() or [type(err).__name__])[0])
        return
    log.info("Spark's log lines go to %s", path)
