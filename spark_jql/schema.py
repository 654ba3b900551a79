"""Names of the columns spark_jql adds, in one place."""

from __future__ import annotations

SCORE_PREFIX = "score_"
AGGREGATE = "jql_score"
TOKENS = "jql_tokens"
TRUNCATED = "jql_truncated"
DROP_REASON = "jql_drop_reason"
THRESHOLD = "jql_threshold"


def head_column(name: str) -> str:
    """``score_<name>``, as the JQL reference names its outputs."""
    return f"{SCORE_PREFIX}{name}"


def output_columns(head_names: list[str]) -> list[str]:
    return [head_column(n) for n in head_names] + [AGGREGATE, TOKENS, TRUNCATED]
