"""Driver-side preflight: one call per stage, before any Spark task starts.

Each stage's inputs are checked where a fault is cheap to find and clear to name: the input
schema against ``columns.*`` (from DataFrame schemas only, so it works on Spark Connect), the
scorer's files, tokenizer and heads (``scoring.preflight``), the scored output and the
thresholds artifact of the earlier stages. A fault raises a ``SparkJQLError`` with one line
naming the setting, column or file; the CLI prints it and exits with code 2. Config values
themselves are validated earlier, in ``config.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, IntegralType, StringType, StructType

from spark_jql import schema as names
from spark_jql.config import (
    ColumnsConfig,
    JobConfig,
    ScorerConfig,
    output_overlaps_input,
    table_clash,
)
from spark_jql.errors import InputError, ModelFilesError, ModelNotAvailableError
from spark_jql.paths import is_filesystem_root, join
from spark_jql.scoring.hub import looks_like_path
from spark_jql.scoring.preflight import ScorerCheck, check_scorer
from spark_jql.spark.sources import data_source
from spark_jql.spark.storage import is_local, local_path, read_text
from spark_jql.thresholds import Thresholds, _qkey

log = logging.getLogger(__name__)


def _listing(schema: StructType) -> str:
    cols = schema.fieldNames()
    return f"{cols[:20]}{' ...' if len(cols) > 20 else ''}"


def check_text_column(schema: StructType, text: str, where: str = "the input") -> None:
    """The text column exists and holds strings (a missing column is not a bad file)."""
    if text not in schema.fieldNames():
        raise InputError(f"text column {text!r} (columns.text) is not in {where}; its columns are {_listing(schema)}")
    dtype = schema[text].dataType
    if not isinstance(dtype, StringType):
        raise InputError(
            f"text column {text!r} has type {dtype.simpleString()}, not string (columns.text, in {where}): a text column "
            f"that is not a string must be cast first, e.g. df.withColumn({text!r}, F.col({text!r}).cast('string'))"
        )


def check_language_columns(schema: StructType, columns: ColumnsConfig, where: str = "the input") -> None:
    """Each language column exists and holds plain values (they key thresholds.json and a join)."""
    if columns.constant_language is not None:
        return
    missing = [c for c in columns.language if c not in schema.fieldNames()]
    if missing:
        raise InputError(
            f"language column(s) {missing} (columns.language) not in {where}; its columns are {_listing(schema)}. "
            "Name the language column(s), set columns.constant_language for monolingual input, "
            "or add one with `spark-jql langid`"
        )
    for name in columns.language:
        dtype = schema[name].dataType
        if not isinstance(dtype, (StringType, IntegralType, BooleanType)):
            raise InputError(
                f"language column {name!r} (columns.language) in {where} has type {dtype.simpleString()}; a language "
                "key must be a string, integer or boolean (cast it, or name a field of it as its own column)"
            )


def output_path(output: str, inputs: list[str]) -> None:
    """A stage's own output directory (``--output``), which Spark replaces: not a root, not over the input."""
    if is_filesystem_root(output):
        raise InputError(f"output {output!r} is empty or the root of a filesystem; give a directory of its own")
    clash = output_overlaps_input(output, inputs, replaced=[output])
    if clash:
        raise InputError(clash)


def data_sources(spark: SparkSession, config: JobConfig) -> None:
    """io.input_format and io.output_format name data sources this session has: a missing connector is one line
    before any work, not a failure at the filter's write after scoring."""
    io = config.io
    probe = join(io.output, "_jql_no_table_here")
    if io.input_format != "auto":
        data_source(spark, io.input_format, "io.input_format", probe)
    data_source(spark, io.output_format, "io.output_format", probe)


def output_folder(spark: SparkSession, output: str, setting: str = "io.output") -> None:
    """An output folder on this machine's disk is not a regular file, nor inside one (found before any work)."""
    if not is_local(spark, output):
        return
    target = local_path(output)
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                what = f"{setting} {output}" + ("" if folder == target else f" lies inside {folder}, which")
                raise InputError(f"{what} is a regular file, not a folder; give a folder for the outputs "
                                 "(or remove the file)")
            return


def tables(spark: SparkSession, config: JobConfig) -> None:
    """No output table is the input table or another output, as the session resolves names (current catalog and
    database filled in): config.py compares names only as written."""
    outputs = config.output_tables()
    if sum(t is not None for t in [config.io.input_table, *outputs.values()]) < 2:
        return
    clash = table_clash(config.io.input_table, outputs, spark.catalog.currentCatalog(), spark.catalog.currentDatabase())
    if clash:
        raise InputError(clash)


def _connect(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _client_sees(scorer: ScorerConfig, with_heads: bool = True) -> bool:
    """Every local model path of ``scorer`` exists here (Hub ids are looked up here as well)."""
    paths = [scorer.embedder.model] if looks_like_path(scorer.embedder.model) else []
    paths += [h.path for h in scorer.heads if h.path is not None] if with_heads else []
    return all(Path(p).expanduser().exists() for p in paths)


def check_models(spark: SparkSession, scorer: ScorerConfig, with_heads: bool = True) -> ScorerCheck | None:
    """The embedder, tokenizer and (unless ``with_heads=False``) heads; skipped on a Spark Connect client
    that cannot see the model files
    (e.g. Databricks Connect on a laptop, models in a Unity Catalog volume): the executors check them then."""
    skip = "preflight: the model files are not visible from this Spark Connect client (%s); the executors check them"
    if not _connect(spark):
        return check_scorer(scorer, with_heads)
    if not _client_sees(scorer, with_heads):
        log.warning(skip, "a local path the client lacks")
        return None
    try:
        return check_scorer(scorer, with_heads)
    except ModelNotAvailableError as err:  # a Hub id the client has not cached: the cluster may have
        if isinstance(err, ModelFilesError):
            raise
        log.warning(skip, err)
        return None


def filtered_columns(scored_columns: list[str], config: JobConfig) -> list[str]:
    """The columns filtered/ and dropped/ will have, from scored/'s (or, before annotate, the input's) columns."""
    scorer = config.scorer
    added = names.output_columns([h.name for h in scorer.heads], scorer.store_embedding != "none")
    return list(dict.fromkeys([*scored_columns, *added, names.THRESHOLD, names.DROP_REASON]))


def output_columns(config: JobConfig, available: list[str], where: str) -> None:
    """``io.output_columns`` names only columns filtered/ and dropped/ will have: refused before any scoring."""
    wanted = config.io.output_columns
    if wanted is None:
        return
    unknown = [c for c in wanted if c not in available]
    if unknown:
        shown = [c for c in available if not c.startswith(("_jql", "__jql"))]
        raise InputError(f"io.output_columns names column(s) {unknown} that the filtered output will not have "
                         f"(from {where}); the available columns are {shown}")


def partition_values(scored: DataFrame, config: JobConfig, where: str) -> None:
    """``io.partition_by_language``: no language value that a partition directory cannot hold apart from null.

    Spark writes ``""`` and null to the same directory (``__HIVE_DEFAULT_PARTITION__``) and reads both back as
    null, so a document's language would change on the way out. One pass over the language column(s) only."""
    if not config.io.partition_by_language:
        return
    for name in config.columns.language:
        if not isinstance(scored.schema[name].dataType, StringType):
            continue
        empty = scored.where(F.col(f"`{name}`") == "").count()
        if empty:
            raise InputError(
                f"io.partition_by_language: language column {name!r} holds the empty string in {empty} document(s) of "
                f"{where}; Spark writes \"\" and null to one partition (__HIVE_DEFAULT_PARTITION__) and reads \"\" back "
                "as null: map \"\" to a language code (e.g. 'und') or to null before scoring, or set "
                "io.partition_by_language=false"
            )


def annotate(spark: SparkSession, config: JobConfig, input_schema: StructType, thresholds_follow: bool = False):
    """annotate (and run): the input's columns, then the embedder, tokenizer and heads.

    With ``columns.embedding`` (heads only) there is no text and no encoder: ``score_embeddings``
    checks that column against the heads on the driver instead.
    """
    if config.columns.embedding is None:
        check_text_column(input_schema, config.columns.text)
    if thresholds_follow:
        check_language_columns(input_schema, config.columns)
        output_columns(config, filtered_columns(input_schema.fieldNames(), config), "the input and the score columns")
    return check_models(spark, config.scorer) if config.columns.embedding is None else None


def scored(spark: SparkSession, path: str, config: JobConfig) -> DataFrame:
    """thresholds and filter: the scored output exists and has the score and language columns."""
    try:
        frame = spark.read.option("mergeSchema", "true").parquet(path)  # incremental units may add columns
        schema = frame.schema
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"cannot read the scored output {path} (run annotate first): {first[:300]}") from None
    if names.AGGREGATE not in schema.fieldNames():
        raise InputError(f"{path} has no {names.AGGREGATE!r} column: it is not the output of annotate")
    check_language_columns(schema, config.columns, where=path)
    return frame


def thresholds_file(spark: SparkSession, path: str, config: JobConfig) -> Thresholds:
    """filter: thresholds.json parses into valid thresholds for filter.quantile and columns.language."""
    return thresholds_fit(Thresholds.from_json(read_text(spark, path), path), path, config)


def thresholds_fit(result: Thresholds, path: str, config: JobConfig) -> Thresholds:
    """``result`` has a threshold for filter.quantile and was computed per columns.language (no Spark needed)."""
    quantile = config.filter.quantile
    if _qkey(quantile) not in result.global_thresholds:
        raise InputError(
            f"{path} has thresholds for quantiles {result.quantiles}, not for filter.quantile {quantile}; "
            "rerun the thresholds stage with it in thresholds.quantiles"
        )
    wanted = ["language"] if config.columns.constant_language is not None else list(config.columns.language)
    if result.language_columns != wanted:
        raise InputError(
            f"{path} was computed per {result.language_columns}, but columns.language is {wanted}; "
            "rerun the thresholds stage or set columns.language to match"
        )
    return result


def embed(spark: SparkSession, config: JobConfig, output: str, input_schema: StructType):
    """embed: its output directory, the text column, then the embedder and tokenizer (embed needs no heads)."""
    output_path(output, config.io.input)
    check_text_column(input_schema, config.columns.text)
    return check_models(spark, config.scorer, with_heads=False)


def text_stage(config: JobConfig, output: str, input_schema: StructType) -> None:
    """judge and langid: their output directory and the text column."""
    output_path(output, config.io.input)
    check_text_column(input_schema, config.columns.text)
