"""The thresholds artifact: per-language score quantiles, as a small JSON file.

Computed once from the scored data and reusable by later runs (e.g. to filter a
new crawl with last month's thresholds). Spark-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from pydantic import ConfigDict, TypeAdapter, ValidationError

from spark_jql.errors import ThresholdsError

FORMAT = "spark_jql-thresholds-v1"
# Read back strictly: a tampered or hand-edited file must not turn into wrong thresholds.
_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
LanguageValue = str | int | float | bool | None


def _qkey(q: float) -> str:
    return repr(float(q))


@dataclass
class LanguageThreshold:
    __pydantic_config__ = _STRICT

    language: dict[str, LanguageValue]  # language column -> value
    documents: int  # documents with a score in this language
    thresholds: dict[str, float]  # quantile -> threshold used by the filter
    fallback: bool = False  # True: too few documents, thresholds are the global ones
    own_thresholds: dict[str, float] | None = None  # this language's own quantiles (also when fallback)


@dataclass
class Thresholds:
    __pydantic_config__ = _STRICT

    score_column: str
    language_columns: list[str]
    quantiles: list[float]
    relative_error: float
    min_docs: int
    global_documents: int
    global_thresholds: dict[str, float]
    languages: list[LanguageThreshold] = field(default_factory=list)
    format: str = FORMAT

    def threshold(self, language: dict[str, str | None], quantile: float) -> float:
        """Threshold for one language (global one if the language is unknown)."""
        for entry in self.languages:
            if entry.language == language:
                return entry.thresholds[_qkey(quantile)]
        return self.global_thresholds[_qkey(quantile)]

    def global_threshold(self, quantile: float) -> float:
        if _qkey(quantile) not in self.global_thresholds:
            raise ThresholdsError(
                f"quantile {quantile} was not computed; these thresholds have {self.quantiles} "
                "(recompute them with that quantile in thresholds.quantiles, or filter at one of these)"
            )
        return self.global_thresholds[_qkey(quantile)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, source: str = "thresholds") -> "Thresholds":
        """Parse and validate; any fault is a ThresholdsError naming ``source`` and the key."""
        try:
            data = json.loads(text)
        except ValueError as err:  # JSONDecodeError, truncated file, bad UTF-8
            raise ThresholdsError(f"thresholds file {source} is not valid JSON ({err}); recompute it with the thresholds stage") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ThresholdsError(f"thresholds file {source} is not a spark_jql thresholds file (format={found!r}, expected {FORMAT!r})")
        try:
            result = _ADAPTER.validate_json(text)  # strict, and JSON objects are accepted for the dataclasses
        except ValidationError as err:
            e = err.errors()[0]
            key = ".".join(str(p) for p in e["loc"]) or "<root>"
            more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
            raise ThresholdsError(f"thresholds file {source}: {key}: {e['msg']} (got {repr(e.get('input'))[:80]}){more}") from None
        problem = result._inconsistency()
        if problem:
            raise ThresholdsError(f"thresholds file {source}: {problem}")
        return result

    def _inconsistency(self) -> str | None:
        """What makes the parsed values unusable (None if nothing): a quantile without its threshold, ..."""
        if not self.quantiles or any(not 0 < q < 1 for q in self.quantiles):
            return f"quantiles must be a non-empty list of values in (0, 1), got {self.quantiles}"
        if not self.language_columns:
            return "language_columns is empty"
        if not 0 < self.relative_error < 1 or self.min_docs < 1 or self.global_documents < 0:
            return f"relative_error {self.relative_error}, min_docs {self.min_docs} or global_documents out of range"
        keys = {_qkey(q) for q in self.quantiles}
        tables = [("global_thresholds", self.global_thresholds)]
        seen: dict[str, int] = {}
        for i, e in enumerate(self.languages):
            if set(e.language) != set(self.language_columns):
                return f"languages.{i}.language has keys {sorted(e.language)}, expected {self.language_columns}"
            # one threshold per language: a second entry would join twice and duplicate its documents
            key = json.dumps([e.language[c] for c in self.language_columns])
            if key in seen:
                return (f"language {json.dumps(e.language, ensure_ascii=False)} is listed twice (languages.{seen[key]} "
                        f"and languages.{i}); keep one entry per language or recompute the file with the thresholds stage")
            seen[key] = i
            if e.documents < 0:
                return f"languages.{i}.documents is negative ({e.documents})"
            tables.append((f"languages.{i}.thresholds", e.thresholds))
            if e.own_thresholds is not None:
                tables.append((f"languages.{i}.own_thresholds", e.own_thresholds))
        for where, table in tables:
            missing = sorted(keys - set(table))
            if missing:
                return f"{where} lacks the threshold for quantile(s) {missing} (quantiles are {self.quantiles})"
            if any(not math.isfinite(v) for v in table.values()):
                return f"{where} holds a value that is not a finite number: {table}"
        return None

    def table(self, quantile: float) -> list[dict]:
        """Rows for display: language, documents, threshold, fallback."""
        key = _qkey(quantile)
        return [
            {**e.language, "documents": e.documents, "threshold": e.thresholds[key], "fallback": e.fallback}
            for e in self.languages
        ]


_ADAPTER = TypeAdapter(Thresholds)
