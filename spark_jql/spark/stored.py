"""Driver-side checks for heads-only scoring: the embedding column against the heads, before any task runs."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, BinaryType, DoubleType, FloatType

from spark_jql import schema
from spark_jql.config import ScorerConfig
from spark_jql.errors import CheckpointError, InputError
from spark_jql.paths import normalise
from spark_jql.scoring.heads import check_provenance, embedder_name, load_head_file
from spark_jql.scoring.hub import resolve_head_file
from spark_jql.scoring.models import resolve

log = logging.getLogger(__name__)


def check_embedding_input(df: DataFrame, scorer: ScorerConfig, column: str, encoding: str = "auto") -> tuple[str, dict]:
    """(encoding to decode with, provenance of the column); an error naming the column or head otherwise."""
    if column not in df.columns:
        raise InputError(f"embedding column {column!r} not found (columns.embedding); the input has columns {df.columns}")
    field = df.schema[column]
    meta = dict(field.metadata.get(schema.PROVENANCE_KEY) or {})
    dtype = field.dataType
    if isinstance(dtype, BinaryType):
        encoding = meta.get("encoding", "auto") if encoding == "auto" else encoding
        if encoding == "auto":
            raise InputError(
                f"embedding column {column!r} is binary without spark_jql metadata naming its encoding; "
                f"set columns.embedding_dtype to float16, bfloat16 or float32"
            )
    elif isinstance(dtype, ArrayType) and isinstance(dtype.elementType, (FloatType, DoubleType)):
        encoding = "float32"  # arrays are read as they are
    else:
        raise InputError(
            f"embedding column {column!r} has type {dtype.simpleString()}; expected binary (annotate's "
            f"jql_embedding) or array<float> (embed's embedding, published embedding datasets)"
        )
    heads = [load_head_file(resolve_head_file(h), h.name) for h in scorer.heads]
    dims = {h.input_dim for h in heads}
    if len(dims) != 1:
        raise CheckpointError(f"heads disagree on input size: {[(h.name, h.input_dim) for h in heads]}")
    dim = dims.pop()
    if "dim" in meta and int(meta["dim"]) != dim:
        raise InputError(
            f"embedding column {column!r} holds {meta['dim']}-dimensional embeddings ({meta.get('embedder')}), "
            f"but heads {[h.name for h in heads]} take {dim}-dimensional input"
        )
    expected = resolve(scorer.embedder)
    if meta.get("embedder"):
        if embedder_name(meta["embedder"]) != embedder_name(expected.model):
            raise InputError(
                f"embedding column {column!r} was made by {meta['embedder']!r}, but scorer.embedder.model is "
                f"{expected.model!r}; set it to the embedder the heads were trained on"
            )
        if meta.get("pooling") and meta["pooling"] != expected.pooling:
            raise InputError(
                f"embedding column {column!r} holds {meta['pooling']!r}-pooled embeddings, "
                f"but scorer.embedder.pooling is {expected.pooling!r}"
            )
    else:
        log.warning("embedding column %r records no embedder (no spark_jql metadata): assuming %s embeddings; "
                    "widths are checked batch by batch", column, expected.model)
    check_provenance(heads, meta.get("embedder") or expected.model, meta.get("pooling") or expected.pooling)
    return encoding, {**meta, "encoding": encoding, "dim": dim}


def check_first_values(df: DataFrame, column: str, encoding: str, dim: int, file_column: str, rows: int = 5) -> None:
    """The first few stored values (one small read on the driver): a wrong width, an empty array or a byte length
    that is not whole values is named here, before any scoring; the rest are checked batch by batch on executors."""
    from spark_jql.scoring.stored import problem

    keep = [c for c in ("id",) if c in df.columns]
    for i, row in enumerate(df.select(column, file_column, *keep).limit(rows).collect(), 1):
        found = problem(row[column], encoding, dim)
        if found:
            who = f"document id={row['id']}" if keep else f"row {i}"
            file = normalise(row[file_column]) if row[file_column] else "the input"
            raise InputError(f"bad stored embedding in {file}: embedding column {column!r} "
                             f"(columns.embedding), {who}: {found}")
