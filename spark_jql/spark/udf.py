"""The scoring pandas UDF and its per-worker model cache.

The expensive object (tokenizer + encoder + heads) is built by the first task a
Python worker runs and kept in a module-level cache keyed by the scoring
configuration and device, so later batches, partitions and tasks on that worker
reuse it (Spark reuses Python workers by default: ``spark.python.worker.reuse``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pandas as pd
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from spark_jql import schema
from spark_jql.config import ScorerConfig
from spark_jql.errors import WorkerLoadError, first_line
from spark_jql.spark.beacon import BeaconAddress, BeaconSender
from spark_jql.spark.progress import BatchTimer, active_beacon, configure_worker_logging
from spark_jql.worker_cache import WorkerCache

log = logging.getLogger(__name__)

CACHE_CAPACITY = 3  # scorers kept per Python worker (as pyspark.ml's ModelCache)
_CACHE = WorkerCache(CACHE_CAPACITY)
_FAILED: dict[tuple[str, str], WorkerLoadError] = {}  # per worker: builds that failed, not retried


def result_schema(head_names: list[str], with_embedding: bool = False, heads_only: bool = False) -> StructType:
    fields = [StructField(schema.head_column(n), FloatType()) for n in head_names]
    fields.append(StructField(schema.AGGREGATE, FloatType()))
    if not heads_only:
        fields += [StructField(schema.TOKENS, IntegerType()), StructField(schema.TRUNCATED, BooleanType())]
    if with_embedding:
        fields.append(StructField(schema.EMBEDDING, BinaryType()))
    return StructType(fields)


def task_device(setting: str) -> str:
    """Device for this task: the GPU Spark assigned to it, else CUDA if present, else CPU.

    An explicit ``cpu`` or ``cuda:N`` setting overrides everything.
    """
    if setting == "cpu" or setting.startswith("cuda:"):
        return setting
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None:
        gpus = ctx.resources().get("gpu")
        if gpus is not None and gpus.addresses:
            return f"cuda:{gpus.addresses[0]}"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        raise WorkerLoadError("scorer.embedder.device is 'cuda' but this executor has no CUDA device (set it to 'auto' or 'cpu')")
    return "cpu"


def worker_load_error(config: ScorerConfig, device: str, err: Exception, with_heads: bool = True) -> WorkerLoadError:
    """One line naming the file and the cause: the preflight's finding where it has one, else the error's."""
    from spark_jql.scoring.preflight import check_scorer

    try:
        check_scorer(config, with_heads)
        cause = f"{config.embedder.model}: {type(err).__name__}: {first_line(err)}"
    except Exception as found:  # the cheap checks name the file (corrupt safetensors, missing tokenizer, ...)
        cause = first_line(found)
    return WorkerLoadError(f"cannot load the scorer on executor pid {os.getpid()} ({device}): {cause}")


def get_scorer(config_json: str, device: str, on_build=None, with_heads: bool = True):
    """The worker's cached Scorer for this configuration and device (built on first use)."""

    def build():
        from spark_jql.scoring.scorer import Scorer

        start = time.perf_counter()
        config = ScorerConfig.model_validate_json(config_json)
        try:
            scorer = Scorer(config, device=device, with_heads=with_heads)
        except Exception as err:
            _FAILED[key] = worker_load_error(config, device, err, with_heads)
            raise _FAILED[key] from None
        log.info("spark_jql: built scorer in pid %d on %s in %.1fs", os.getpid(), device, time.perf_counter() - start)
        return scorer

    key = (config_json, device, with_heads)
    if key in _FAILED:  # a retried task on this worker fails at once, with the same line
        raise _FAILED[key]
    scorer, built = _CACHE.get(key, build)
    if built and on_build is not None:
        on_build()
    return scorer


def rebatch(batches: Iterator, size: int | None) -> Iterator:
    """Each pandas batch cut into chunks of at most ``size`` rows (as ``predict_batch_udf`` does).

    The stage's batch size applies to this UDF alone: setting ``spark.sql.execution.arrow.maxRecordsPerBatch``
    instead would change every later pandas UDF of the caller's session. Spark's batches are never merged, so
    a ``size`` above that setting (10,000 by default) gives Spark's batches.
    """
    for batch in batches:
        if size is None or len(batch) <= size:
            yield batch
            continue
        for start in range(0, len(batch), size):
            yield batch.iloc[start:start + size]


def _failure_injection() -> bool:
    """Test hook: ``SPARK_JQL_TEST_FAIL_ONCE=<path>`` fails the first attempt of partition 0, once.

    Lets tests prove that Spark task retries neither lose nor duplicate rows.
    """
    marker = os.environ.get("SPARK_JQL_TEST_FAIL_ONCE")
    if not marker or os.path.exists(marker):
        return False
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None or ctx.partitionId() != 0 or ctx.attemptNumber() != 0:
        return False
    open(marker, "w").close()
    return True


def make_score_udf(config: ScorerConfig, builds=None, docs=None, build_pids=None, batch_size: int | None = None,
                   beacon: BeaconAddress | None = None):
    """A pandas UDF ``text -> struct<score_*, jql_score, jql_tokens, jql_truncated>``, ``batch_size`` rows at most per scorer call.

    ``builds`` / ``docs`` / ``build_pids`` are optional accumulators (classic sessions
    only: Spark Connect has none) counting scorer builds, scored documents and the pids
    of the workers that built a scorer (diagnostics; the one-build-per-worker test).
    ``beacon``: where tasks report documents scored so far (spark/beacon.py); default: the
    running :class:`~spark_jql.spark.progress.ScoringProgress`'s, if any.
    """
    beacon = beacon or active_beacon()
    config_json = config.model_dump_json()
    device_setting = config.embedder.device
    return_type = result_schema([h.name for h in config.heads], config.store_embedding != "none")
    log_level = logging.getLogger("spark_jql").getEffectiveLevel()  # workers log at the driver's verbosity

    def on_build():
        if builds is not None:
            builds.add(1)
        if build_pids is not None:
            build_pids.add([os.getpid()])

    @pandas_udf(return_type)
    def score_udf(texts: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        configure_worker_logging(log_level)
        scorer = get_scorer(config_json, task_device(device_setting), on_build)

        def counted(batches):
            for batch in batches:
                if docs is not None:
                    docs.add(len(batch))
                yield batch

        fail_once = _failure_injection()
        sent = BeaconSender(beacon)
        for frame in BatchTimer().timed(scorer.score_batches(counted(rebatch(texts, batch_size)))):
            yield frame
            sent.add(len(frame))
            if fail_once:
                raise RuntimeError("spark_jql test hook: failing this task attempt after one batch")
        sent.close()

    return score_udf


_HEADS = WorkerCache(CACHE_CAPACITY)


def get_head_scorer(config_json: str):
    """The worker's cached heads-only scorer (module level: the UDF refers to it by name, never pickles the cache)."""

    def build():
        from spark_jql.scoring.scorer import HeadScorer

        return HeadScorer(ScorerConfig.model_validate_json(config_json))

    return _HEADS.get(config_json, build)[0]


EMBEDDING_PROBLEM = "__jql_embedding_problem"


def make_heads_udf(config: ScorerConfig, encoding: str, batch_size: int | None = None, beacon: BeaconAddress | None = None):
    """A pandas UDF ``stored embedding -> struct<score_*, jql_score, __jql_embedding_problem>``: heads only, on the
    CPU, no encoder. An unusable value gets null scores and its problem, for the query to raise naming its row."""
    config_json = config.model_dump_json()
    return_type = result_schema([h.name for h in config.heads], heads_only=True).add(EMBEDDING_PROBLEM, StringType())
    log_level = logging.getLogger("spark_jql").getEffectiveLevel()
    beacon = beacon or active_beacon()

    @pandas_udf(return_type)
    def heads_udf(values: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        configure_worker_logging(log_level)
        scorer = get_head_scorer(config_json)
        sent = BeaconSender(beacon)
        for batch in rebatch(values, batch_size):
            problems: dict[int, str] = {}
            frame = scorer.score(batch.tolist(), encoding, problems)
            frame[EMBEDDING_PROBLEM] = [problems.get(i) for i in range(len(frame))]
            frame.index = batch.index
            yield frame
            sent.add(len(frame))
        sent.close()

    return heads_udf
