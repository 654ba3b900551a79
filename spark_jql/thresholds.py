"""The thresholds artifact: per-language score quantiles, as a small JSON file.

Computed once from the scored data and reusable by later runs (e.g. to filter a
new crawl with last month's thresholds). Spark-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FORMAT = "spark_jql-thresholds-v1"


def _qkey(q: float) -> str:
    return repr(float(q))


@dataclass
class LanguageThreshold:
    language: dict[str, str | None]  # language column -> value
    documents: int  # documents with a score in this language
    thresholds: dict[str, float]  # quantile -> threshold used by the filter
    fallback: bool = False  # True: too few documents, thresholds are the global ones
    own_thresholds: dict[str, float] | None = None  # this language's own quantiles (also when fallback)


@dataclass
class Thresholds:
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
            raise KeyError(f"quantile {quantile} was not computed; available: {self.quantiles}")
        return self.global_thresholds[_qkey(quantile)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, source: str = "thresholds") -> "Thresholds":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a spark_jql thresholds file (format={data.get('format')!r})")
        data["languages"] = [LanguageThreshold(**entry) for entry in data.get("languages", [])]
        return cls(**data)

    def table(self, quantile: float) -> list[dict]:
        """Rows for display: language, documents, threshold, fallback."""
        key = _qkey(quantile)
        return [
            {**e.language, "documents": e.documents, "threshold": e.thresholds[key], "fallback": e.fallback}
            for e in self.languages
        ]
