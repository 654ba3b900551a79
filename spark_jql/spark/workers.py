"""The executors' Python: can it import what scoring needs? Checked once per session, on the driver.

A plain local Python session (``SparkSession.builder.getOrCreate()`` from a venv's
interpreter, no ``PYSPARK_PYTHON``) runs its workers with whatever ``python3`` is on
PATH, often the system's, without pandas or torch: the first scoring task then dies
with ~150 lines ending ``No module named 'pandas'``. So: on a local classic master
nobody configured, the workers use this interpreter (as ``build_session`` does); and
before any scoring a one-row probe asks the workers' Python what it cannot import,
and a missing module is one line naming the interpreter and the setting to change.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from spark_jql.errors import SparkJQLError, spark_cause

log = logging.getLogger("spark_jql.spark.workers")

NEEDED = ("pandas", "pyarrow", "torch", "spark_jql")
_CHECKED: set = set()


class WorkerPythonError(SparkJQLError):
    """The executors' Python cannot run the scoring UDF (a missing package, or no interpreter at all)."""


def use_local_interpreter(spark) -> bool:
    """On a local classic master whose worker Python nobody set, run the workers with this interpreter.

    A local master's workers are this machine's processes, so this interpreter has what
    the driver has. Returns True when it changed the session's worker Python."""
    from spark_jql.spark.session import is_connect

    if is_connect(spark) or os.environ.get("PYSPARK_PYTHON"):
        return False
    sc = spark.sparkContext
    if not sc.master.startswith("local") or sc.getConf().get("spark.pyspark.python"):
        return False
    if sc.pythonExec != sys.executable:
        log.info("local session: Python workers run %s (PYSPARK_PYTHON was not set)", sys.executable)
        sc.pythonExec = sys.executable
        return True
    return False


def _session_key(spark):
    from spark_jql.spark.session import is_connect

    if is_connect(spark):
        return ("connect", getattr(spark, "session_id", id(spark)))
    sc = spark.sparkContext
    return ("classic", sc.applicationId, sc.pythonExec)


def missing_on_workers(spark) -> tuple[str, list[str]]:
    """(the workers' interpreter, the modules of :data:`NEEDED` it cannot import), from a one-row job."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    needed = list(NEEDED)

    def probe(_):  # defined here: pickled by value, so the probe itself needs no spark_jql on the worker
        import importlib.util
        import sys as worker_sys

        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        return worker_sys.executable + "\t" + ",".join(missing)

    udf = F.udf(probe, StringType(), useArrow=False)  # plain pickled rows: the probe itself needs no pyarrow
    row = spark.range(1).select(udf(F.col("id")).alias("p")).first()
    executable, _, missing = row["p"].partition("\t")
    return executable, [m for m in missing.split(",") if m]


def check_worker_python(spark) -> None:
    """Raise :class:`WorkerPythonError` (one line) when the executors' Python cannot import :data:`NEEDED`.

    Once per session (and worker interpreter); ``SPARK_JQL_CHECK_WORKERS=0`` skips it."""
    if os.environ.get("SPARK_JQL_CHECK_WORKERS", "1") == "0":
        return
    use_local_interpreter(spark)
    key = _session_key(spark)
    if key in _CHECKED:
        return
    try:
        executable, missing = missing_on_workers(spark)
    except Exception as err:  # the workers could not even start Python
        missing = re.search(r"No module named '([^']+)'", str(err))
        why = f"its Python cannot import {missing.group(1)}" if missing else spark_cause(err)
        raise WorkerPythonError(
            f"the executors could not run Python ({why}); point Spark at an interpreter with spark_jql installed "
            f"(spark.pyspark.python / PYSPARK_PYTHON; this driver runs {sys.executable})") from None
    if missing:
        raise WorkerPythonError(
            f"the executors' Python ({executable}) cannot import {', '.join(missing)}, which scoring needs: install "
            f"spark_jql's requirements there, or set spark.pyspark.python / PYSPARK_PYTHON to an interpreter that has "
            f"them (this driver runs {sys.executable})")
    _CHECKED.add(key)
