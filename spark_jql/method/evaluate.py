"""How well scores agree with labels: Spearman, Pearson and MSE, per language and overall.

JQL judges every model by its rank correlation with human educational-value
ratings. This module computes those numbers for heads, their aggregate and LLM
judges, reduces several human ratings per document to one label, and ranks judges
against the humans. It needs only numpy and pandas (no Spark, no scipy), so it runs
anywhere the scored parquet or a JSON-lines file can be read.

Human label rule (``reduce_ratings``): the most frequent rating; when several
ratings are equally frequent, the mean of those tied ratings. ``[1, 1, 3] -> 1``,
``[1, 2] -> 1.5``, ``[0, 2, 2, 4, 4] -> 3``. A single number passes through;
``None`` or an empty list gives NaN (the document is not counted). Labels and
predictions must be numbers: a text column (``'12'``) is an error naming the
column, never parsed character by character or coerced to NaN.

Confidence intervals: percentile bootstrap over documents (``resamples`` draws with
replacement, seeded, so a report is reproducible). Judges are ranked on the
documents every *ranked* judge answered (and that have a label), with each judge's
coverage shown; a judge below the stated minimum coverage is flagged, not ranked,
so it can neither climb the ranking by abstaining on hard documents nor, through its
gaps, take documents (or a whole language) away from the others.
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
from spark_jql.errors import InputError, first_line

OVERALL = "__all__"
LABEL_RULE = "majority vote over ratings; ties -> mean of the tied ratings"


# -- label reduction ------------------------------------------------------------------------------
def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _not_a_number(column: str, value) -> InputError:
    return InputError(
        f"column {column!r} must hold numbers (or lists of numbers for rating columns); found "
        f"{type(value).__name__} {value!r:.60}: cast it to a numeric type first"
    )


def reduce_ratings(value, column: str = "label") -> float:
    """One label from one or several ratings (see the module docstring for the rule)."""
    if _is_missing(value):
        return math.nan
    if _is_number(value):
        return float(value)
    if isinstance(value, (str, bytes, dict, bool, np.bool_)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise _not_a_number(column, value)
    bad = [v for v in value if not _is_missing(v) and not _is_number(v)]
    if bad:
        raise _not_a_number(column, bad[0])
    ratings = [float(v) for v in value if not _is_missing(v)]
    if not ratings:
        return math.nan
    counts = Counter(ratings)
    top = max(counts.values())
    tied = [r for r, c in counts.items() if c == top]
    return float(sum(tied) / len(tied))


def as_labels(values: Iterable, column: str = "label") -> np.ndarray:
    """A column of numbers or rating lists -> float64 labels (NaN where missing); text is an error naming ``column``."""
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return as_numbers(values, column)
    return np.array([reduce_ratings(v, column) for v in values], dtype=np.float64)


def as_numbers(values, column: str) -> np.ndarray:
    """A column of numbers (nullable ints included) -> float64 with NaN for missing; anything else names ``column``."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_bool_dtype(series):
        raise _not_a_number(column, series.iloc[0] if len(series) else True)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = next((v for v in series if not _is_missing(v) and not _is_number(v)), None)
    if bad is not None:
        raise _not_a_number(column, bad)
    return np.array([math.nan if _is_missing(v) else float(v) for v in series], dtype=np.float64)


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


def regression_metrics(pred, truth, resamples: int = 0, seed: int = 0, level: float = 0.95) -> dict:
    """``documents`` (finite pairs), ``spearman``, ``pearson``, ``mse``; undefined values are None.

    With ``resamples > 0`` also ``spearman_ci``, ``pearson_ci``, ``mse_ci``: [low, high]
    percentile-bootstrap intervals at ``level`` (see ``bootstrap_intervals``).
    """
    p, t = _finite_pairs(pred, truth)
    n = len(p)
    out = {
        "documents": int(n),
        "spearman": _pearson(ranks(p), ranks(t)) if n >= 2 else math.nan,
        "pearson": _pearson(p, t) if n >= 2 else math.nan,
        "mse": float(((p - t) ** 2).mean()) if n else math.nan,
    }
    out = {k: _clean(v) for k, v in out.items()}
    if resamples > 0:
        out.update(bootstrap_intervals(p, t, resamples, seed, level))
    return out


def _clean(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def bootstrap_intervals(pred, truth, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile-bootstrap [low, high] for Spearman, Pearson and MSE over finite pairs.

    The resampled rows depend only on ``seed`` and the number of pairs, so columns
    compared on the same documents (judges on their common set) get paired resamples.
    Resamples where a correlation is undefined (constant side) are left out; fewer than
    two pairs give None.
    """
    p, t = _finite_pairs(pred, truth)
    n = len(p)
    if n < 2 or resamples < 1:
        return {"spearman_ci": None, "pearson_ci": None, "mse_ci": None}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 2_000_000 // n))  # bound the (chunk, n) matrices to ~16 MB each
    stats = {"spearman": [], "pearson": [], "mse": []}
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        ps, ts = p[idx], t[idx]
        stats["pearson"].append(_rowwise_pearson(ps, ts))
        stats["spearman"].append(_rowwise_pearson(pd.DataFrame(ps).rank(axis=1).to_numpy(), pd.DataFrame(ts).rank(axis=1).to_numpy()))
        stats["mse"].append(((ps - ts) ** 2).mean(axis=1))
    tail = (1 - level) / 2 * 100
    out = {}
    for name, parts in stats.items():
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        out[f"{name}_ci"] = [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))] if len(values) else None
    return out


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
    if "://" not in text and not Path(text).exists():
        raise InputError(f"input {text} does not exist")
    if text.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")):
        try:
            return pd.read_json(text, lines=True, dtype=False)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read JSON lines {text}: {first_line(err)}") from None
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
def _columns(frame: pd.DataFrame, label: str, predictions: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    truth = as_labels(get_path(frame, label), label)
    return truth, {p: as_numbers(get_path(frame, p), p) for p in predictions}


def _language_masks(frame, language, constant_language) -> dict[str, np.ndarray]:
    if language is None and constant_language is None:
        return {}
    langs = _languages(frame, language, constant_language).to_numpy()
    return {lang: langs == lang for lang in sorted(set(langs))}


def evaluate(
    frame: pd.DataFrame,
    label: str,
    predictions: Sequence[str] | None = None,
    language: str | None = None,
    constant_language: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Metrics of each prediction column against ``label``, overall and per language, with bootstrap intervals."""
    predictions = list(predictions or default_prediction_columns(frame.columns))
    if not predictions:
        raise InputError(f"no prediction columns given and none named score_* or jql_score in {list(frame.columns)}")
    truth, preds = _columns(frame, label, predictions)

    def block(mask) -> dict:
        return {p: regression_metrics(v[mask], truth[mask], resamples, seed, level) for p, v in preds.items()}

    return {
        "label": label,
        "label_rule": LABEL_RULE,
        "predictions": predictions,
        "bootstrap": {"resamples": resamples, "seed": seed, "level": level},
        "documents": int(len(frame)),
        "labelled_documents": int(np.isfinite(truth).sum()),
        "overall": block(np.ones(len(frame), dtype=bool)),
        "per_language": {lang: block(mask) for lang, mask in _language_masks(frame, language, constant_language).items()},
    }


DEFAULT_MIN_COVERAGE = 0.9


def _coverage(answered: int, labelled: int) -> float | None:
    return round(answered / labelled, 4) if labelled else None


def _rank_block(truth, preds, mask, eligible, why_not, resamples, seed, level) -> dict:
    """One ranking (overall or one language): eligible judges on their common documents, the rest listed and flagged."""
    labelled = np.isfinite(truth) & mask
    n_labelled = int(labelled.sum())
    ranked_names = [j for j in preds if eligible[j]]
    common = labelled.copy() if ranked_names else np.zeros_like(labelled)
    for j in ranked_names:
        common &= np.isfinite(preds[j])
    rows, flagged = [], []
    for j, v in preds.items():
        answered = int((labelled & np.isfinite(v)).sum())
        row = {"judge": j, "answered": answered, "coverage": _coverage(answered, n_labelled),
               "spearman_own": regression_metrics(v[labelled], truth[labelled])["spearman"]}
        if eligible[j]:
            rows.append({"judge": j, **regression_metrics(v[common], truth[common], resamples, seed, level), **row})
        else:
            flagged.append({**row, "flag": why_not[j]})
    rows.sort(key=lambda r: (r["spearman"] is None, -(r["spearman"] or 0.0), r["judge"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i if r["spearman"] is not None else None
    return {"labelled_documents": n_labelled, "common_documents": int(common.sum()), "judges": rows, "flagged": flagged}


def rank_judges(
    frame: pd.DataFrame,
    label: str,
    judges: Sequence[str],
    language: str | None = None,
    constant_language: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> dict:
    """Judges ordered by Spearman against the human label, best first, overall and per language.

    A judge is *ranked* in a block (overall, or one language) when it answered at least
    ``min_coverage`` of that block's labelled documents; overall it must also reach it in every
    language. Ranked judges are measured on the same documents: those with a label that every
    *ranked* judge of the block answered. A judge below the minimum is listed under ``flagged``
    with its coverage and ``spearman_own`` (on what it answered), never ranked, and its gaps never
    shrink the others' common documents: a judge with no answer in one language is flagged in that
    language (and overall) while the others keep their full results. Every row carries
    ``answered``, ``coverage`` (answered / labelled) and ``spearman_own``.
    """
    judges = list(judges)
    if not judges:
        raise InputError("rank-judges needs at least one judge column")
    if not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage must be in [0, 1], got {min_coverage}")
    truth, preds = _columns(frame, label, judges)
    labelled = np.isfinite(truth)
    masks = _language_masks(frame, language, constant_language)

    def check(mask) -> tuple[dict, dict]:
        n = int((mask & labelled).sum())
        eligible, why = {}, {}
        for j, v in preds.items():
            cov = _coverage(int((mask & labelled & np.isfinite(v)).sum()), n)
            eligible[j] = cov is not None and cov >= min_coverage
            why[j] = f"coverage {cov} < min_coverage {min_coverage}" if not eligible[j] else None
        return eligible, why

    per_language = {}
    overall_ok, overall_why = check(np.ones(len(frame), dtype=bool))
    for lang, mask in masks.items():
        eligible, why = check(mask)
        per_language[lang] = _rank_block(truth, preds, mask, eligible, why, resamples, seed, level)
        if not per_language[lang]["labelled_documents"]:
            continue  # no human label in this language: nothing to hold against any judge
        for j in preds:
            if overall_ok[j] and not eligible[j]:
                overall_ok[j] = False
                overall_why[j] = f"{why[j]} in language {lang!r}"
    overall = _rank_block(truth, preds, np.ones(len(frame), dtype=bool), overall_ok, overall_why,
                          resamples, seed, level)
    return {
        "label": label,
        "label_rule": LABEL_RULE,
        "compared_on": "documents with a label that every ranked judge answered",
        "min_coverage": min_coverage,
        "ranked_if": f"coverage >= {min_coverage} (overall: in every language as well); others are flagged, not ranked",
        "bootstrap": {"resamples": resamples, "seed": seed, "level": level},
        "overall": overall,
        "per_language": per_language,
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _fmt_ci(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci")
    return _fmt(m[key]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def language_table(per_language: dict[str, dict[str, dict]], columns: Sequence[str], metric: str = "spearman") -> str:
    """JQL's layout: one row per language, one column per model/judge, ``metric`` in the cells, then the mean."""
    rows = [["language", *columns]]
    for lang, block in per_language.items():
        rows.append([lang, *(_fmt(block[c][metric]) if c in block else "-" for c in columns)])
    means = []
    for c in columns:
        values = [b[c][metric] for b in per_language.values() if c in b and b[c][metric] is not None]
        means.append(_fmt(float(np.mean(values))) if values else "-")
    rows.append(["mean", *means])
    return _table(rows)


def _intervals(report: dict) -> str:
    b = report.get("bootstrap") or {}
    return f"; [{b['level']:.0%} bootstrap CI, {b['resamples']} resamples, seed {b['seed']}]" if b.get("resamples") else ""


def format_report(report: dict) -> str:
    """A fixed-width table (one row per language and prediction column), then the per-language Spearman table."""
    rows = [["language", "prediction", "docs", "spearman", "pearson", "mse"]]
    blocks = [("all", report["overall"])] + list(report["per_language"].items())
    for lang, block in blocks:
        for pred, m in block.items():
            rows.append([lang, pred, _fmt(m["documents"]), _fmt_ci(m, "spearman"), _fmt_ci(m, "pearson"), _fmt_ci(m, "mse")])
    text = f"label: {report['label']} ({report['label_rule']}){_intervals(report)}\n" + _table(rows)
    if report["per_language"]:
        text += "\n\nSpearman per language\n" + language_table(report["per_language"], report["predictions"])
    return text


def format_ranking(ranking: dict) -> str:
    rows = [["language", "rank", "judge", "docs", "answered", "coverage", "spearman", "pearson", "mse", "spearman_own"]]
    blocks = [("all", ranking["overall"])] + list(ranking["per_language"].items())
    flags = []
    for lang, block in blocks:
        for m in block["judges"]:
            rows.append([lang, _fmt(m["rank"]), m["judge"], _fmt(m["documents"]), _fmt(m["answered"]), _fmt(m["coverage"]),
                         _fmt_ci(m, "spearman"), _fmt_ci(m, "pearson"), _fmt_ci(m, "mse"), _fmt(m["spearman_own"])])
        for m in block["flagged"]:
            rows.append([lang, "flagged", m["judge"], "-", _fmt(m["answered"]), _fmt(m["coverage"]), "-", "-", "-",
                         _fmt(m["spearman_own"])])
            flags.append(f"  {lang}: {m['judge']}: {m['flag']}")
    text = (f"label: {ranking['label']} ({ranking['label_rule']}){_intervals(ranking)}\n"
            f"ranked: {ranking['ranked_if']}\n"
            f"compared on {ranking['compared_on']}: {ranking['overall']['common_documents']} of "
            f"{ranking['overall']['labelled_documents']} labelled documents\n" + _table(rows))
    if flags:
        text += "\n\nflagged, not ranked (spearman_own is on the documents they answered, not comparable):\n" + "\n".join(flags)
    if ranking["per_language"]:
        judges = [r["judge"] for r in ranking["overall"]["judges"]] + [r["judge"] for r in ranking["overall"]["flagged"]]
        per = {lang: {r["judge"]: r for r in block["judges"]} for lang, block in ranking["per_language"].items()}
        text += "\n\nSpearman per language (ranked judges on each language's common documents; - : flagged there)\n"
        text += language_table(per, judges)
    return text


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, allow_nan=False)
