"""Names of the columns spark_jql adds, in one place."""

from __future__ import annotations

SCORE_PREFIX = "score_"
AGGREGATE = "jql_score"
TOKENS = "jql_tokens"
TRUNCATED = "jql_truncated"
DROP_REASON = "jql_drop_reason"
THRESHOLD = "jql_threshold"
EMBEDDING = "jql_embedding"  # kept embedding: binary, little-endian float16/bfloat16 (scorer.store_embedding)
PROVENANCE_KEY = "spark_jql"  # Spark column metadata key: the embedder and heads behind a column


def head_column(name: str) -> str:
    """``score_<name>``, as the JQL reference names its outputs."""
    return f"{SCORE_PREFIX}{name}"


def output_columns(head_names: list[str], with_embedding: bool = False) -> list[str]:
    return [head_column(n) for n in head_names] + [AGGREGATE, TOKENS, TRUNCATED] + ([EMBEDDING] if with_embedding else [])
