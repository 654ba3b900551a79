"""The embed stage: labelled documents in, ``id, language, <labels>, embedding`` out.

Only the encoder is loaded (no head is read). The ``embedding`` column's Spark metadata
(key ``spark_jql``, kept in the parquet footer) records the embedder id, revision,
max_length, pooling, normalisation, prefix, task adapter and dtype that made it.

Head training must see exactly the vectors scoring sees, so the embeddings come
from the same per-worker scorer cache (``udf.get_scorer``, keyed by the same
``ScorerConfig``) and the same ``Scorer.embed`` (tokenise, truncate, length-sorted
micro-batches, pooling, L2) that ``annotate`` uses. Documents without text get a
null embedding and are kept, so row counts still add up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, FloatType

from spark_jql.config import ScorerConfig
from spark_jql.errors import InputError
from spark_jql.layout import EMBEDDINGS, OutputLayout
from spark_jql.schema import PROVENANCE_KEY
from spark_jql.scoring.models import embedding_metadata
from spark_jql.spark.api import quoted, require_columns, require_text_column
from spark_jql.spark.beacon import BeaconSender
from spark_jql.spark.progress import active_beacon
from spark_jql.spark.stage import UnitStage
from spark_jql.spark.udf import get_scorer, rebatch, task_device

EMBEDDING = "embedding"


def make_embed_udf(config: ScorerConfig, docs=None, batch_size: int | None = None):
    """A pandas UDF ``text -> array<float>`` (null where the text is empty), ``batch_size`` rows at most per call."""
    config_json = config.model_dump_json()
    device_setting = config.embedder.device
    beacon = active_beacon()  # the stage's progress counts what the tasks report

    @pandas_udf(ArrayType(FloatType()))
    def embed_udf(texts: Iterator[pd.Series]) -> Iterator[pd.Series]:
        scorer = None  # built on the first batch: an empty partition loads no model
        sent = BeaconSender(beacon)
        for batch in rebatch(texts, batch_size):
            if scorer is None:
                scorer = get_scorer(config_json, task_device(device_setting), with_heads=False)
            if docs is not None:
                docs.add(len(batch))
            matrix = scorer.embed(batch)
            rows = [None if row[0] != row[0] else row for row in matrix]  # NaN row = no text
            yield pd.Series(rows, index=batch.index, dtype=object)
            sent.add(len(batch))
        sent.close()

    return embed_udf


def _path(df: DataFrame, path: str) -> Column:
    """A top-level column by literal name, else a nested field by dotted path (``scores.score``)."""
    if path in df.columns:
        return quoted(path)
    head = path.split(".", 1)[0]
    require_columns(df, [head], "input")
    return F.col(".".join("`" + p.replace("`", "``") + "`" for p in path.split(".")))


def parse_label_spec(spec: str) -> tuple[str, str]:
    """``name=path`` or ``path`` (name = last path part): ``judge=scores.score`` -> ('judge', 'scores.score')."""
    if "=" in spec:
        name, path = (s.strip() for s in spec.split("=", 1))
    else:
        path = spec.strip()
        name = path.rsplit(".", 1)[-1]
    if not name or not path:
        raise InputError(f"label {spec!r} must look like path or name=path")
    return name, path


def embed(
    df: DataFrame,
    scorer: ScorerConfig,
    text_column: str = "text",
    id_column: str | None = "id",
    language: str | list[str] | None = None,
    constant_language: str | None = None,
    labels: list[str] | dict[str, str] | None = None,
    arrow_batch_size: int | None = None,
    docs=None,
) -> DataFrame:
    """``id`` (string), ``language`` (string), one column per label, ``embedding`` (array<float>).

    ``language``: column(s) or dotted path(s), several joined with ``_`` (``deu_Latn``);
    ``labels``: ``["scores.score", "llama=judge_llama"]`` or ``{name: path}``; label
    values are copied as they are (numbers, or lists of human ratings).
    ``id_column=None`` numbers the rows with ``monotonically_increasing_id`` (unique, not stable across runs).
    """
    require_text_column(df, text_column)
    specs = dict(parse_label_spec(s) for s in labels) if isinstance(labels, list) else dict(labels or {})
    reserved = {"id", "language", EMBEDDING} & set(specs)
    if reserved:
        raise InputError(f"label name(s) {sorted(reserved)} clash with output columns; rename them with name=path")
    ident = F.monotonically_increasing_id() if id_column is None else _path(df, id_column)
    if constant_language is not None:
        lang = F.lit(constant_language)
    elif language:
        parts = [language] if isinstance(language, str) else list(language)
        lang = F.concat_ws("_", *[_path(df, p).cast("string") for p in parts])
    else:
        lang = F.lit(None).cast("string")
    udf = make_embed_udf(scorer, docs=docs, batch_size=arrow_batch_size)
    meta = {PROVENANCE_KEY: embedding_metadata(scorer.embedder, "float32")}
    return df.select(
        ident.cast("string").alias("id"),
        lang.alias("language"),
        *[_path(df, path).alias(name) for name, path in specs.items()],
        udf(quoted(text_column)).alias(EMBEDDING, metadata=meta),
    )


class EmbedStage(UnitStage):
    """``embed`` on the stage skeleton: the encoder alone, one embedding per document, labels copied."""

    name = "embed"

    def __init__(self, cfg, output: str, labels: list[str], id_column: str | None, language_path: str | None):
        self.cfg, self.output, self.labels, self.id_column = cfg, output, list(labels or []), id_column
        if language_path:  # an explicit --language wins over the job's columns section
            self.language, self.constant = language_path, None
        else:
            self.constant = cfg.columns.constant_language
            self.language = None if self.constant else cfg.columns.language

    def check(self, spark, schema, source) -> None:
        from spark_jql.spark import preflight

        preflight.embed(spark, self.cfg, self.output, schema)

    def fingerprint(self):
        from spark_jql.scoring.identity import scorer_fingerprint

        found = scorer_fingerprint(self.cfg.scorer, self.cfg.columns.text, with_heads=False)
        found.settings["embed"] = {"labels": self.labels, "id": self.id_column, "language": self.language,
                                   "constant_language": self.constant}
        return found

    def transform(self, rows: DataFrame, unit: int) -> DataFrame:
        frame = embed(rows, self.cfg.scorer, self.cfg.columns.text, self.id_column, self.language, self.constant,
                      self.labels, self.cfg.spark.arrow_batch_size)
        if self.id_column is None:  # numbered per unit: the unit keeps ids unique across units and reruns
            frame = frame.withColumn("id", F.concat(F.lit(f"{unit}-"), F.col("id")))
        return frame


def write_embeddings(cfg, output: str | None = None, labels: list[str] | None = None, id_column: str | None = "id",
                     language_path: str | None = None) -> dict:
    """The ``embed`` stage: read io.input, write its embeddings with labels as parquet, unit by unit (resumable)."""
    from spark_jql.spark.session import session_for
    from spark_jql.spark.stage import run_stage

    spark = session_for(cfg)
    out = output or OutputLayout(cfg.io.output).path(EMBEDDINGS)
    done = run_stage(spark, cfg, EmbedStage(cfg, out, labels or [], id_column, language_path), out)
    written = done["frame"]
    with_embedding = written.where("embedding IS NOT NULL").count()
    provenance = written.schema[EMBEDDING].metadata.get(PROVENANCE_KEY, {})
    columns = [c for c in written.columns if c != "jql_unit"]
    return {**done["summary"], "rows_with_embedding": with_embedding, "columns": columns, "embedder": provenance}
