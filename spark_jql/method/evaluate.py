"""How well scores agree with labels: Spearman, Pearson and MSE, per language and overall.

JQL judges every model by its rank correlation with human educational-value
ratings. This module computes those numbers for heads, their aggregate and LLM
judges, reduces several human ratings per document to one label, and ranks judges
against the humans. It needs only numpy and pandas (no Spark, no scipy), so it runs
anywhere the scored parquet or a JSON-lines file can be read.

Human label rule (``reduce_ratings``): the most frequent rating; when several
ratings are equally frequent, the mean of those tied ratings. ``[1, 1, 3] -> 1``,
``[1, 2] -> 1.5``, ``[0, 2, 2, 4, 4] -> 3``. A single number passes through;
``None`` or an empty list gives NaN (the document is not counted).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spark_jql import schema
from spark_jql.errors import InputError

OVERALL = "__all__"
LABEL_RULE = "majority vote over ratings; ties -> mean of the tied ratings"


# -- label reduction ------------------------------------------------------------------------------
def reduce_ratings(value) -> float:
    """One label from one or several ratings (see the module docstring for the rule)."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    ratings = [float(v) for v in value if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not ratings:
        return math.nan
    counts = Counter(ratings)
    top = max(counts.values())
    tied = [r for r, c in counts.items() if c == top]
    return float(sum(tied) / len(tied))


def as_labels(values: Iterable) -> np.ndarray:
    """A column of numbers or rating lists -> float64 labels (NaN where missing)."""
    return np.array([reduce_ratings(v) for v in values], dtype=np.float64)


# -- metrics --------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else math.nan


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their average rank (as scipy.stats.rankdata)."""
    return pd.Series(x).rank(method="average").to_numpy(dtype=np.float64)


def spearman(pred, truth) -> float:
    """Spearman's rho over finite pairs; NaN when either side is constant or fewer than 2 pairs."""
    p, t = _finite_pairs(pred, truth)
    return _pearson(ranks(p), ranks(t)) if len(p) >= 2 else math.nan


def _finite_pairs(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def regression_metrics(pred, truth) -> dict:
    """``documents`` (finite pairs), ``spearman``, ``pearson``, ``mse``; undefined values are None."""
    p, t = _finite_pairs(pred, truth)
    n = len(p)
    out = {
        "documents": int(n),
        "spearman": _pearson(ranks(p), ranks(t)) if n >= 2 else math.nan,
        "pearson": _pearson(p, t) if n >= 2 else math.nan,
        "mse": float(((p - t) ** 2).mean()) if n else math.nan,
    }
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


# -- reading columns ------------------------------------------------------------------------------
def get_path(frame: pd.DataFrame, path: str) -> pd.Series:
    """A column by name, or a nested field by dotted path (``metadata.language``)."""
    if path in frame.columns:
        return frame[path]
    head, *rest = path.split(".")
    if head not in frame.columns or not rest:
        raise InputError(f"column {path!r} not found; the input has columns {list(frame.columns)}")

    def dig(value):
        for key in rest:
            if value is None:
                return None
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return frame[head].map(dig).rename(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Parquet (file or directory, as Spark writes it) or JSON lines into pandas."""
    text = str(path)
    if text.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")):
        return pd.read_json(text, lines=True, dtype=False)
    import pyarrow.dataset as ds

    try:
        return ds.dataset(text, format="parquet").to_table().to_pandas(maps_as_pydicts="strict")
    except (FileNotFoundError, OSError, ValueError) as err:
        raise InputError(f"cannot read parquet {text}: {err}") from None


def default_prediction_columns(columns: Sequence[str]) -> list[str]:
    """Every ``score_<head>`` column, then ``jql_score`` if present."""
    cols = [c for c in columns if c.startswith(schema.SCORE_PREFIX)]
    return cols + ([schema.AGGREGATE] if schema.AGGREGATE in columns else [])


def _languages(frame: pd.DataFrame, language: str | None, constant_language: str | None) -> pd.Series:
    if constant_language is not None:
        return pd.Series([constant_language] * len(frame), index=frame.index)
    if language is None:
        return pd.Series([OVERALL] * len(frame), index=frame.index)
    return get_path(frame, language).map(lambda v: "null" if v is None else str(v))


# -- reports --------------------------------------------------------------------------------------
def evaluate(
    frame: pd.DataFrame,
    label: str,
    predictions: Sequence[str] | None = None,
    language: str | None = None,
    constant_language: str | None = None,
) -> dict:
    """Metrics of each prediction column against ``label``, overall and per language."""
    predictions = list(predictions or default_prediction_columns(frame.columns))
    if not predictions:
        raise InputError(f"no prediction columns given and none named score_* or jql_score in {list(frame.columns)}")
    truth = as_labels(get_path(frame, label))
    preds = {p: pd.to_numeric(get_path(frame, p), errors="coerce").to_numpy(dtype=np.float64) for p in predictions}
    langs = _languages(frame, language, constant_language).to_numpy()

    def block(mask) -> dict:
        return {p: regression_metrics(v[mask], truth[mask]) for p, v in preds.items()}

    per_language = {}
    if language is not None or constant_language is not None:
        for lang in sorted(set(langs)):
            per_language[lang] = block(langs == lang)
    return {
        "label": label,
        "label_rule": LABEL_RULE,
        "predictions": predictions,
        "documents": int(len(frame)),
        "labelled_documents": int(np.isfinite(truth).sum()),
        "overall": block(np.ones(len(frame), dtype=bool)),
        "per_language": per_language,
    }


def rank_judges(
    frame: pd.DataFrame,
    label: str,
    judges: Sequence[str],
    language: str | None = None,
    constant_language: str | None = None,
) -> dict:
    """Judges ordered by Spearman against the human label, overall and per language (best first)."""
    report = evaluate(frame, label, judges, language, constant_language)

    def order(block: dict) -> list[dict]:
        rows = [{"judge": j, **m} for j, m in block.items()]
        return sorted(rows, key=lambda r: (r["spearman"] is None, -(r["spearman"] or 0.0), r["judge"]))

    return {
        "label": label,
        "label_rule": LABEL_RULE,
        "overall": order(report["overall"]),
        "per_language": {lang: order(block) for lang, block in report["per_language"].items()},
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """A fixed-width table: one row per (language, prediction column)."""
    rows = [["language", "prediction", "docs", "spearman", "pearson", "mse"]]
    blocks = [("all", report["overall"])] + list(report["per_language"].items())
    for lang, block in blocks:
        for pred, m in block.items():
            rows.append([lang, pred, _fmt(m["documents"]), _fmt(m["spearman"]), _fmt(m["pearson"]), _fmt(m["mse"])])
    return f"label: {report['label']} ({report['label_rule']})\n" + _table(rows)


def format_ranking(ranking: dict) -> str:
    rows = [["language", "rank", "judge", "docs", "spearman", "pearson", "mse"]]
    blocks = [("all", ranking["overall"])] + list(ranking["per_language"].items())
    for lang, ordered in blocks:
        for i, m in enumerate(ordered, 1):
            rows.append([lang, str(i), m["judge"], _fmt(m["documents"]), _fmt(m["spearman"]), _fmt(m["pearson"]), _fmt(m["mse"])])
    return f"label: {ranking['label']} ({ranking['label_rule']})\n" + _table(rows)


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, allow_nan=False)
