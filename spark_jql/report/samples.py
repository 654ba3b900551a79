"""Example documents per score band for the report (``report.samples``), the first thing a curator asks to see.

Opt-in: it is the only part of the report that reads the text (``scored/``), and what it shows ends up in a page
that may be shared. The choice is deterministic (the smallest hashes of the text in each band, so a rerun shows
the same documents) and cheap: Spark keeps only the first N rows per band in each partition before the shuffle
(its window group limit), and only the first ``chars`` characters of each text reach the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from spark_jql.errors import InputError
from spark_jql.layout import SCORED, OutputLayout

BANDS = ["below 1", "1 to 2", "2 to 3", "3 to 4", "4 and above"]  # JQL scores are 0-5 ratings; the edges take the rest


@dataclass
class Sample:
    score: float
    language: str
    text: str  # at most the cap, "…" marking a cut


@dataclass
class SampleBand:
    label: str
    samples: list[Sample] = field(default_factory=list)


def _q(name: str):
    return F.col("`" + name.replace("`", "``") + "`")


def cut(text: str, chars: int) -> str:
    """``text`` in at most ``chars`` characters, the last one an ellipsis where it was longer."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def collect_samples(spark: SparkSession, output: str, text_column: str, score_column: str, language_columns: list[str],
                    per_band: int, chars: int) -> list[SampleBand]:
    """Up to ``per_band`` documents of ``scored/`` in each band of ``score_column`` (empty bands are left out)."""
    path = OutputLayout(output).path(SCORED)
    try:
        scored = spark.read.parquet(path)
    except Exception as err:
        raise InputError(f"report.samples: cannot read {path}, the scored documents examples are taken from "
                         f"({str(err).splitlines()[0]}); set report.samples: 0 or run annotate") from None
    missing = [c for c in (text_column, score_column) if c not in scored.columns]
    if missing:
        raise InputError(f"report.samples: {path} lacks column(s) {missing} (columns.text is {text_column!r})")
    langs = [c for c in language_columns if c in scored.columns]
    score, text = _q(score_column), _q(text_column)
    band = F.least(F.greatest(F.floor(score), F.lit(0)), F.lit(len(BANDS) - 1)).cast("int")
    language = F.concat_ws("_", *[F.coalesce(_q(c).cast("string"), F.lit("∅")) for c in langs]) if langs else F.lit("")
    rows = (
        scored.where(text.isNotNull() & score.isNotNull() & ~F.isnan(score) & (F.abs(score) != F.lit(float("inf"))))
        .select(band.alias("band"), score.cast("double").alias("score"), language.alias("language"),
                F.xxhash64(text).alias("h"), F.substring(text, 1, chars + 1).alias("text"))
        .withColumn("n", F.row_number().over(Window.partitionBy("band").orderBy("h", "text", "score")))
        .where(F.col("n") <= per_band)
        .collect()
    )
    bands = [SampleBand(label) for label in BANDS]
    for r in sorted(rows, key=lambda r: (r["band"], r["n"])):
        bands[r["band"]].samples.append(Sample(float(r["score"]), r["language"], cut(r["text"], chars)))
    return [b for b in bands if b.samples]
