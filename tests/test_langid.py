"""Language identification stage (lingua; models inside the wheel, nothing downloaded)."""

from __future__ import annotations

import pytest

pytest.importorskip("lingua")

from spark_jql.config import ConfigError, LangIdConfig, load_config  # noqa: E402
from spark_jql.errors import InputError  # noqa: E402
from spark_jql.spark.langid import add_language, benchmark, detect, text_script  # noqa: E402
from tests.conftest import shared_file  # noqa: E402

TEXTS = {
    ("spa", "Latn"): "El gobierno anunció ayer nuevas medidas para mejorar la educación pública en todas las regiones del país.",
    ("deu", "Latn"): "Die Bundesregierung hat gestern neue Maßnahmen zur Verbesserung der öffentlichen Bildung angekündigt.",
    ("rus", "Cyrl"): "Правительство вчера объявило о новых мерах по улучшению государственного образования во всех регионах.",
    ("cmn", "Hani"): "政府昨天宣布了改善全国各地公共教育的新措施，包括增加教师培训和学校设施的投资。",
    ("jpn", "Jpan"): "政府は昨日、全国の公教育を改善するための新たな措置を発表しました。教員研修への投資も含まれます。",
    ("arb", "Arab"): "أعلنت الحكومة أمس عن إجراءات جديدة لتحسين التعليم العام في جميع مناطق البلاد.",
}


def test_detects_language_and_script_in_fineweb2_codes():
    out = detect(list(TEXTS.values()) + ["", "   ", None])
    got = list(zip(out["language"], out["language_script"]))[: len(TEXTS)]
    assert got == list(TEXTS)
    assert out["language_score"][: len(TEXTS)].between(0.3, 1.0).all()
    assert out["language"][len(TEXTS):].isna().all() and out["language_score"][len(TEXTS):].isna().all()


def test_iso_codes_restricted_languages_and_min_confidence():
    cfg = LangIdConfig(code_style="iso639_3", languages=["cmn", "ara", "eng"])
    out = detect([TEXTS[("cmn", "Hani")], TEXTS[("arb", "Arab")]], cfg)
    assert list(out["language"]) == ["zho", "ara"]
    strict = detect(["ok", TEXTS[("spa", "Latn")]], LangIdConfig(min_confidence=0.99, languages=["spa", "por", "ita"]))
    assert strict["language"].iloc[0] is None and strict["language_score"].isna().iloc[0]  # unsure -> null
    with pytest.raises(InputError, match="unknown language code"):
        detect(["hola"], LangIdConfig(languages=["spa", "xxx"]))
    with pytest.raises(ConfigError, match="max_chars"):
        load_config(None, ["max_chars=0"], model=LangIdConfig)


def test_text_script():
    assert text_script("Hello мир мир") == "Cyrl" and text_script("123 !!") is None
    assert text_script("ひらがなとカタカナと漢字") == "Jpan" and text_script("한국어 텍스트") == "Hang"


def test_add_language_spark(spark):
    rows = [(i, t) for i, t in enumerate(list(TEXTS.values()) + ["", None])]
    df = spark.createDataFrame(rows, "id long, text string")
    out = df.transform(add_language, LangIdConfig()).orderBy("id").collect()
    assert [r["id"] for r in out] == list(range(len(rows)))
    assert [(r["language"], r["language_script"]) for r in out[: len(TEXTS)]] == list(TEXTS)
    assert out[-1]["language"] is None and out[-2]["language"] is None
    assert set(df.transform(add_language).columns) == {"id", "text", "language", "language_script", "language_score"}

    labelled = spark.createDataFrame([(1, TEXTS[("deu", "Latn")], "xxx", "Latn"), (2, TEXTS[("rus", "Cyrl")], None, None)],
                                     "id long, text string, language string, language_script string")
    with pytest.raises(InputError, match="already has column"):
        labelled.transform(add_language)
    filled = {r["id"]: r for r in labelled.transform(add_language, LangIdConfig(if_exists="fill")).collect()}
    assert filled[1]["language"] == "xxx" and filled[1]["language_score"] is None  # existing labels are kept
    assert (filled[2]["language"], filled[2]["language_script"]) == ("rus", "Cyrl")
    replaced = {r["id"]: r["language"] for r in labelled.transform(add_language, LangIdConfig(if_exists="replace")).collect()}
    assert replaced == {1: "deu", 2: "rus"}


def test_agreement_on_fineweb2_samples():
    """FineWeb2's own `language` (GlotLID) is the reference; measured 99.1% on all 800 documents."""
    paths = [shared_file("fineweb2_spa_Latn_600.jsonl"), shared_file("fineweb2_deu_Latn_200.jsonl")]
    result = benchmark([str(p) for p in paths], LangIdConfig(), limit=None)
    assert result["documents"] == 800
    assert result["agreement_language"] >= 0.98, result["confusions"]
    assert result["agreement_language_script"] >= 0.98
    assert result["per_reference_language"]["deu"]["agreement"] >= 0.97
