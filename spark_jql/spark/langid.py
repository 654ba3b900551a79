"""Language identification: an optional stage that adds ``language`` (+ ``language_script``, ``language_score``).

For corpora without a language column. Per-language thresholds then work as usual
(``columns.language: [language, language_script]``). The detector is lingua
(``pip install "spark_jql[langid]"``): its models ship inside the wheel, so no
model is downloaded at run time, and its codes are ISO 639-3. With
``code_style: fineweb2`` (default) macrolanguage codes become the individual codes
FineWeb2 (GlotLID) uses, so the output lines up with FineWeb2's ``language`` column.

Spark-free core: :func:`detect` (texts -> codes, scripts, confidences).
Spark side: :func:`add_language` (DataFrame in, DataFrame out; a pandas UDF with a
per-worker detector cache). Benchmark: ``python -m spark_jql.spark.langid FILE.jsonl ...``.
"""

from __future__ import annotations

import argparse
import json
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache

import pandas as pd

from spark_jql.config import LangIdConfig
from spark_jql.errors import InputError
from spark_jql.worker_cache import WorkerCache

# lingua ISO 639-3 (macrolanguage) -> the individual language code FineWeb2 / GlotLID uses
FINEWEB2_CODES = {
    "zho": "cmn", "ara": "arb", "fas": "pes", "msa": "zsm", "est": "ekk", "lav": "lvs",
    "sqi": "als", "aze": "azj", "mon": "khk", "swa": "swh",
}
_TO_ISO = {v: k for k, v in FINEWEB2_CODES.items()}
# scripts that the character counts cannot tell (Han is shared by Chinese and Japanese, etc.)
_LANGUAGE_SCRIPT = {"jpn": "Jpan", "kor": "Kore", "zho": "Hani", "cmn": "Hani"}
# first word of a Unicode character name -> ISO 15924 script
_SCRIPTS = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "ARABIC": "Arab", "GREEK": "Grek", "HEBREW": "Hebr",
    "DEVANAGARI": "Deva", "BENGALI": "Beng", "GURMUKHI": "Guru", "GUJARATI": "Gujr", "TAMIL": "Taml",
    "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym", "ORIYA": "Orya", "SINHALA": "Sinh",
    "THAI": "Thai", "LAO": "Laoo", "KHMER": "Khmr", "MYANMAR": "Mymr", "TIBETAN": "Tibt",
    "GEORGIAN": "Geor", "ARMENIAN": "Armn", "ETHIOPIC": "Ethi", "HANGUL": "Hang", "CJK": "Hani",
    "HIRAGANA": "Hira", "KATAKANA": "Kana", "THAANA": "Thaa", "SYRIAC": "Syrc",
}
_DEFAULT_SCRIPT = {  # when a text has no letters to count
    "rus": "Cyrl", "ukr": "Cyrl", "bel": "Cyrl", "bul": "Cyrl", "mkd": "Cyrl", "srp": "Cyrl", "kaz": "Cyrl",
    "mon": "Cyrl", "khk": "Cyrl", "ara": "Arab", "arb": "Arab", "fas": "Arab", "pes": "Arab", "urd": "Arab",
    "ell": "Grek", "heb": "Hebr", "hin": "Deva", "mar": "Deva", "ben": "Beng", "pan": "Guru", "guj": "Gujr",
    "tam": "Taml", "tel": "Telu", "tha": "Thai", "kat": "Geor", "hye": "Armn",
}

_DETECTORS = WorkerCache()


def _lingua():
    try:
        import lingua
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise InputError('language identification needs lingua: pip install "spark_jql[langid]"') from err
    return lingua


def available_languages(code_style: str = "fineweb2") -> list[str]:
    lingua = _lingua()
    codes = sorted(l.iso_code_639_3.name.lower() for l in lingua.Language.all())
    return sorted(FINEWEB2_CODES.get(c, c) for c in codes) if code_style == "fineweb2" else codes


def get_detector(languages: tuple[str, ...] | None, low_accuracy: bool):
    """The process's cached lingua detector for these languages (built once per Python worker)."""
    return _DETECTORS.get((languages, low_accuracy), lambda: _build_detector(languages, low_accuracy))[0]


def _build_detector(languages: tuple[str, ...] | None, low_accuracy: bool):
    lingua = _lingua()
    if languages is None:
        builder = lingua.LanguageDetectorBuilder.from_all_languages()
    else:
        by_code = {l.iso_code_639_3.name.lower(): l for l in lingua.Language.all()}
        wanted, unknown = [], []
        for code in languages:
            iso = _TO_ISO.get(code, code)
            (wanted.append(by_code[iso]) if iso in by_code else unknown.append(code))
        if unknown:
            raise InputError(f"langid: unknown language code(s) {unknown}; known: {available_languages()}")
        if len(set(wanted)) < 2:
            raise InputError("langid: give at least two languages to choose among (or none for all)")
        builder = lingua.LanguageDetectorBuilder.from_languages(*sorted(set(wanted), key=str))
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


@lru_cache(maxsize=65536)
def _char_script(ch: str) -> str | None:
    try:
        return _SCRIPTS.get(unicodedata.name(ch).split(" ", 1)[0])
    except ValueError:
        return None


def text_script(text: str) -> str | None:
    """Dominant ISO 15924 script among the letters of ``text`` (Hira/Kana/Han mixed -> Jpan)."""
    counts = Counter(_char_script(ch) for ch in text if ch.isalpha())
    counts.pop(None, None)
    if not counts:
        return None
    if counts.get("Hira", 0) + counts.get("Kana", 0) > 0 and counts.get("Hani", 0) + counts["Hira"] + counts["Kana"] >= max(counts.values()):
        return "Jpan"
    if counts.get("Hang", 0) and counts["Hang"] + counts.get("Hani", 0) >= max(counts.values()):
        return "Kore" if counts.get("Hani", 0) else "Hang"
    return counts.most_common(1)[0][0]


def script_for(code: str | None, text: str) -> str | None:
    if code is None:
        return text_script(text)
    if code in _LANGUAGE_SCRIPT:
        fixed = _LANGUAGE_SCRIPT[code]
        return "Hang" if fixed == "Kore" and text_script(text) == "Hang" else fixed
    return text_script(text) or _DEFAULT_SCRIPT.get(code)


def detect(texts, config: LangIdConfig | None = None) -> pd.DataFrame:
    """Spark-free: ``language``, ``language_script``, ``language_score`` for each text (None for empty text)."""
    config = config or LangIdConfig()
    det = get_detector(tuple(config.languages) if config.languages else None, config.low_accuracy)
    codes, scripts, scores = [], [], []
    for text in texts:
        head = (text or "")[: config.max_chars]
        code = score = None
        if head.strip():
            values = det.compute_language_confidence_values(head)
            if values and values[0].value > 0 and values[0].value >= config.min_confidence:
                code = values[0].language.iso_code_639_3.name.lower()
                if config.code_style == "fineweb2":
                    code = FINEWEB2_CODES.get(code, code)
                score = float(values[0].value)
        codes.append(code)
        scripts.append(script_for(code, head) if head.strip() else None)
        scores.append(score)
    return pd.DataFrame({"language": codes, "language_script": scripts, "language_score": pd.Series(scores, dtype="float64")})


# -- Spark ----------------------------------------------------------------------
def add_language(df, config: LangIdConfig | None = None, text_column: str = "text"):
    """Add the language columns of ``config`` (default ``language``, ``language_script``, ``language_score``).

    Every input row and column is kept. ``config.if_exists`` decides what happens when
    the language column is already there (``error``, ``replace``, ``fill`` nulls only).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from spark_jql.spark.api import quoted, require_text_column

    config = config or LangIdConfig()
    require_text_column(df, text_column)
    outputs = {"language": config.language_column, "language_script": config.script_column, "language_score": config.score_column}
    outputs = {k: v for k, v in outputs.items() if v}
    present = [v for v in outputs.values() if v in df.columns]
    if present and config.if_exists == "error":
        raise InputError(
            f"input already has column(s) {present}; set if_exists to 'replace' or 'fill' (fill only null languages)"
        )
    get_detector(tuple(config.languages) if config.languages else None, config.low_accuracy)  # fail early on bad codes
    config_json = config.model_dump_json()
    schema = StructType([StructField("language", StringType()), StructField("language_script", StringType()),
                         StructField("language_score", DoubleType())])

    @pandas_udf(schema)
    def langid_udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        cfg = LangIdConfig.model_validate_json(config_json)
        for texts in batches:
            yield detect(texts.tolist(), cfg)

    tmp = "__jql_langid"
    with_id = df.select("*", langid_udf(quoted(text_column)).alias(tmp))
    keep = [quoted(c) for c in df.columns if c not in outputs.values()]
    fill = config.if_exists == "fill" and config.language_column in df.columns
    new = []
    for field_name, column in outputs.items():
        value = F.col(f"{tmp}.{field_name}")
        if fill:
            # rows that already have a language keep all their language columns (null where there was none)
            existing = quoted(column).cast(schema[field_name].dataType) if column in df.columns else F.lit(None).cast(schema[field_name].dataType)
            value = F.when(quoted(config.language_column).isNull(), value).otherwise(existing)
        new.append(value.alias(column))
    return with_id.select(*keep, *new)


def cli_langid(config, output: str | None, langid: LangIdConfig) -> dict:
    """``spark-jql langid``: read ``io.input``, write parquet with the language columns to ``output``."""
    from pyspark.sql import functions as F

    from spark_jql.spark import preflight
    from spark_jql.spark.inputs import read_input
    from spark_jql.spark.io import join_path
    from spark_jql.spark.lease import OutputLease
    from spark_jql.spark.session import build_session

    spark = build_session(config.spark.master, config.spark.app_name, config.spark.conf)
    output = output or join_path(config.io.output, "with_language")
    start = time.perf_counter()
    source = read_input(spark, config.io.input, config.io.input_format)
    preflight.text_stage(config, output, source.schema)
    with OutputLease(spark, output, "langid", beside=True):
        rows = source.count()
        add_language(source, langid, config.columns.text).write.mode(config.io.mode).parquet(output)
        written = spark.read.parquet(output)
        counts = written.groupBy(langid.language_column).count().orderBy(F.desc("count")).collect()
        n = sum(r["count"] for r in counts)
        if n != rows:
            raise InputError(f"langid read {rows} rows but wrote {n}")
        seconds = time.perf_counter() - start
        return {"langid": {"output": output, "rows": rows, "seconds": round(seconds, 2),
                           "docs_per_second": round(rows / seconds, 2) if seconds else None,
                           "languages": {str(r[langid.language_column]): r["count"] for r in counts}}}


# -- benchmark --------------------------------------------------------------------
def benchmark(paths: list[str], config: LangIdConfig | None = None, limit: int | None = None) -> dict:
    """Speed and agreement with a reference ``language`` (+ ``language_script``) column in JSON-lines files."""
    config = config or LangIdConfig()
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    rows = rows[:limit] if limit else rows
    texts = [r.get("text") or "" for r in rows]
    t0 = time.perf_counter()
    get_detector(tuple(config.languages) if config.languages else None, config.low_accuracy)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = detect(texts, config)
    seconds = time.perf_counter() - t0
    ref = [r.get("language") for r in rows]
    ref_script = [r.get("language_script") for r in rows]
    same = [a == b for a, b in zip(out["language"], ref)]
    same_both = [a == b and s == rs for a, b, s, rs in zip(out["language"], ref, out["language_script"], ref_script)]
    per_ref: dict[str, list[int]] = {}
    for r, ok in zip(ref, same):
        per_ref.setdefault(str(r), [0, 0])
        per_ref[str(r)][0] += ok
        per_ref[str(r)][1] += 1
    confusions = Counter((r, str(o)) for r, o in zip(ref, out["language"]) if r != o)
    return {
        "files": [str(p) for p in paths],
        "documents": len(rows),
        "mean_chars": round(sum(len(t) for t in texts) / max(1, len(texts)), 1),
        "max_chars": config.max_chars,
        "languages": "all" if config.languages is None else config.languages,
        "low_accuracy": config.low_accuracy,
        "detector_build_seconds": round(build, 2),
        "seconds": round(seconds, 2),
        "docs_per_second": round(len(rows) / seconds, 1) if seconds else None,
        "agreement_language": round(sum(same) / max(1, len(rows)), 4),
        "agreement_language_script": round(sum(same_both) / max(1, len(rows)), 4),
        "per_reference_language": {k: {"agree": a, "documents": n, "agreement": round(a / n, 4)} for k, (a, n) in per_ref.items()},
        "confusions": [{"reference": r, "detected": o, "documents": c} for (r, o), c in confusions.most_common(10)],
        "mean_confidence": round(float(out["language_score"].mean()), 4) if len(out) else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_jql.spark.langid",
                                description="Benchmark language identification against a reference `language` column (JSON lines).")
    p.add_argument("files", nargs="+")
    p.add_argument("--languages", help="comma-separated codes to choose among (default: all)")
    p.add_argument("--max-chars", type=int, nargs="+", default=[500], help="one or more prefix lengths to measure")
    p.add_argument("--high-accuracy", action="store_true", help="lingua's high-accuracy mode (slow build, ~1.4 GB)")
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    results = []
    for n in args.max_chars:
        cfg = LangIdConfig(languages=args.languages.split(",") if args.languages else None,
                           low_accuracy=not args.high_accuracy, max_chars=n)
        results.append(benchmark(args.files, cfg, args.limit))
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
