"""The three stages: thin Params wrappers over spark/api.py (annotate, compute_thresholds, mark_rows).

Every Param is a plain string, number or list, so pyspark.ml's ``DefaultParamsWritable`` stores the whole stage
(the scorer's config and the fitted thresholds as JSON) in its metadata, and ``DefaultParamsReadable`` rebuilds it
in another process. Where that persistence needs a SparkContext (Spark Connect on pyspark 3.5), ``save`` fails
with pyspark's own error; ``to_json``/``from_json`` carry a stage anywhere.
"""

from __future__ import annotations

import json

from pyspark import keyword_only
from pyspark.ml import Estimator, Model, Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jql import schema
from spark_jql.config import ColumnsConfig, ScorerConfig, ThresholdConfig
from spark_jql.errors import InputError
from spark_jql.spark.api import KEEP, UNKNOWN_LANGUAGE, annotate, compute_thresholds, drop_reason, mark_rows, quoted
from spark_jql.thresholds import Thresholds

KEEP_COLUMN = "jql_keep"


def _param(name: str, doc: str, converter) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter)


def _refuse_on_connect(what: str) -> None:
    """pyspark.ml saves and loads Python stages through the JVM (``_jsparkSession``), which a Connect client lacks."""
    from pyspark.sql.utils import is_remote

    if is_remote():
        raise InputError(f"{what} of a spark_jql.ml stage needs a classic Spark session: pyspark.ml writes Python "
                         "stages through the JVM, which a Spark Connect client does not have; use stage.to_json() "
                         "and <Stage>.from_json(text) to carry it (store the text with any file API)")


class _JsonStage(Params):
    """``to_json``/``from_json``: a stage's Params as one JSON document (for where pyspark.ml persistence is not)."""

    def write(self):
        _refuse_on_connect("save")
        return super().write()

    @classmethod
    def read(cls):
        _refuse_on_connect("load")
        return super().read()

    def to_json(self) -> str:
        return json.dumps({"class": type(self).__name__, "params": {p.name: v for p, v in self.extractParamMap().items()}})

    @classmethod
    def from_json(cls, text: str):
        found = json.loads(text)
        if found.get("class") != cls.__name__:
            raise ValueError(f"{cls.__name__}.from_json: the JSON holds a {found.get('class')!r}")
        return cls()._set(**found["params"])


class _Language(Params):
    languageCols = _param("languageCols", "columns that name a document's language (columns.language)",
                          TypeConverters.toListString)
    scoreCol = _param("scoreCol", "the score the thresholds apply to", TypeConverters.toString)

    def _columns(self) -> ColumnsConfig:
        return ColumnsConfig(language=self.getOrDefault(self.languageCols))


class JQLScorer(Transformer, _JsonStage, DefaultParamsReadable, DefaultParamsWritable):
    """Adds ``score_<head>``, ``jql_score``, ``jql_tokens``, ``jql_truncated`` (as :func:`spark_jql.spark.annotate`)."""

    config = _param("config", "the ScorerConfig as JSON (embedder, heads, aggregate, batching)", TypeConverters.toString)
    textCol = _param("textCol", "the column holding the document text", TypeConverters.toString)
    arrowBatchSize = _param("arrowBatchSize", "rows per batch handed to the scorer at most (0: Spark's)",
                            TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, config: ScorerConfig | str | None = None, textCol: str = "text", arrowBatchSize: int = 0):
        super().__init__()
        self._setDefault(config=ScorerConfig().model_dump_json(), textCol="text", arrowBatchSize=0)
        kwargs = self._input_kwargs
        if isinstance(kwargs.get("config"), ScorerConfig):
            kwargs["config"] = kwargs["config"].model_dump_json()
        if kwargs.get("config") is None:
            kwargs.pop("config", None)
        self._set(**kwargs)

    def scorer_config(self) -> ScorerConfig:
        return ScorerConfig.model_validate_json(self.getOrDefault(self.config))  # validated: a bad value names its key

    def _transform(self, dataset: DataFrame) -> DataFrame:
        batch = self.getOrDefault(self.arrowBatchSize) or None
        return annotate(dataset, self.scorer_config(), self.getOrDefault(self.textCol), batch)


class JQLThresholds(Estimator, _Language, _JsonStage, DefaultParamsReadable, DefaultParamsWritable):
    """``fit``: per-language quantiles of the score (small languages fall back to the global ones)."""

    quantiles = _param("quantiles", "quantiles to compute (thresholds.quantiles)", TypeConverters.toListFloat)
    quantile = _param("quantile", "the quantile the fitted model keeps at (filter.quantile)", TypeConverters.toFloat)
    minDocs = _param("minDocs", "languages with fewer scored documents use the global thresholds", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, languageCols: list[str] | None = None, quantiles: list[float] | None = None,
                 quantile: float = 0.6, minDocs: int = ThresholdConfig().min_docs, scoreCol: str = schema.AGGREGATE):
        super().__init__()
        self._setDefault(languageCols=["language"], quantiles=[0.6, 0.7], quantile=0.6,
                         minDocs=ThresholdConfig().min_docs, scoreCol=schema.AGGREGATE)
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _fit(self, dataset: DataFrame) -> JQLThresholdsModel:
        wanted = sorted({*self.getOrDefault(self.quantiles), self.getOrDefault(self.quantile)})
        config = ThresholdConfig(quantiles=wanted, min_docs=self.getOrDefault(self.minDocs))
        found = compute_thresholds(dataset, config, self._columns(), self.getOrDefault(self.scoreCol))
        model = JQLThresholdsModel(thresholds=found.to_json(), quantile=self.getOrDefault(self.quantile),
                                   languageCols=self.getOrDefault(self.languageCols))
        return model._set(scoreCol=self.getOrDefault(self.scoreCol))


class JQLThresholdsModel(Model, _Language, _JsonStage, DefaultParamsReadable, DefaultParamsWritable):
    """Adds ``jql_threshold``, ``jql_keep`` (score >= its language's threshold) and ``jql_drop_reason`` (else null)."""

    thresholds = _param("thresholds", "the fitted thresholds (thresholds.json's content)", TypeConverters.toString)
    quantile = _param("quantile", "which of the thresholds' quantiles to keep at", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, thresholds: str | None = None, quantile: float = 0.6, languageCols: list[str] | None = None):
        super().__init__()
        self._setDefault(quantile=0.6, languageCols=["language"], scoreCol=schema.AGGREGATE)
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def fitted(self) -> Thresholds:
        return Thresholds.from_json(self.getOrDefault(self.thresholds), "JQLThresholdsModel.thresholds")

    def _transform(self, dataset: DataFrame) -> DataFrame:
        found = self.fitted()
        marked = mark_rows(dataset, found, self.getOrDefault(self.quantile), self._columns())
        reason = F.when(F.col(KEEP), F.lit(None).cast("string")).otherwise(drop_reason(found.score_column))
        return marked.select(*[quoted(c) for c in marked.columns if c not in (KEEP, UNKNOWN_LANGUAGE)],
                             F.col(KEEP).alias(KEEP_COLUMN), reason.alias(schema.DROP_REASON))
