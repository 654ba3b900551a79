"""Judge presets reproduce their sources byte for byte, and parse and truncate as those sources do (no Spark)."""

from __future__ import annotations

import hashlib

import pytest

from spark_jql.config import JudgeConfig
from spark_jql.judge_presets import ML_FILTER_COMMIT, ML_FILTER_LANGUAGES, clean_text, ml_filter_code, preset_template
from spark_jql.method.judge import ChatClient, Prompt, parse_score, prompt_set

# sha256 of each prompt as ml_filter loads it (yaml.safe_load(...)["prompt"]) from
# github.com/Modalities/ml_filter at ML_FILTER_COMMIT, data/prompts/fineweb_edu/educational_prompt.yaml ("default")
# and educational_prompt_target_language_<code>.yaml; computed from those files, listed in docs/jql_method.md
ML_FILTER_SHA256 = {
    "default": "fc770538fc4f918bea903c71457fda86755ebbf5c8f37091ee413ea66e06b059",
    "bg": "44bb97dd5082c9b9af96e60fb02549531cf71cd493fd613014ecc1ad7559a271",
    "ca": "9d4b65fd588d9e1a2122f76daecaa4913da2a82d3f4c329dc03b053541af68b3",
    "cs": "c7863d8f0446002e3da0e46df47ec8dea00e53875ef374b3d02deebc9f9f7735",
    "da": "50d682ddf9992f385ac0090f04d3523a73df06b93a14ced330eaf85dc4660e4c",
    "de": "545ddab48f7958826890fef4fac326ee5d7f4862a080a67d127fc82e3beadf30",
    "el": "d5892821c5143cba21b667fd577054404520cbc9b1d194ede914a78d761cb334",
    "en": "4ea2867d29b81aec4091df411738338c498c9e959174cf569d71561681706e4a",
    "es": "010b476006aacfb46493043a92b9056fc22f3d7cc57d5690ffae0e73aa61f477",
    "et": "c6276147fb248d7d9021d18b9f84525fb7b347039888b9a58f9dc9bc3b5be43f",
    "eu": "9ab2a5ba61fa6243693d0286381cb9c798e06afa45cfff90cd5c9882317b3f4c",
    "fi": "998e78492262f3e2c1ebe6d09689efcad5e913dfb04f420e15289155cb3fc14b",
    "fr": "24d045cb4f4f992443f6b0d0bce0b6a14646ecf6f40fed974cbe8d6d8299a6a7",
    "ga": "7d5f03f8d62611448066043974854f66a8dbd3d5f804b9178290ada45dbb1986",
    "gl": "7164264c9f3a74536c9023f1dba7675aa26a0b08ecc30e7016b697c94262d2ce",
    "hr": "e8aa125958de1700ccf02d55065bc494acfd89bacee3a9b073abaf90ed4b5dd9",
    "hu": "1111e224bc3b60c41f71a972f127692cb67a8d023de6b310c78c77bc3f450f47",
    "hy": "4ebdf7ad3f0da0bc6cfef491c066bae783e8ff520914d8d79e2a97db54f70da7",
    "is": "9bf8b74ec4f8cba91634d9d5a0f6209e6a408ee508b7704176ec82ff72782420",
    "it": "e668e659b777d4c18c68a4713631fc6c5a53fbdd468b32536e10403cb2cb7177",
    "lt": "84dc9cdd41d41368801700c2527422853bced0a7d01705555f024933807b1fb8",
    "lv": "69546795d1304c5ecc3527ce666ec8c66dcd5a8308039391946311ba513fa4bb",
    "mk": "e2c6448d99c71afcc3075238d59d5f8e9ad4d0faf27787fd50182e8d98a9feb3",
    "mt": "f7faefb30b2a987fa5f77c44dc5334526359284cd8f9eb3eefb14587657666a5",
    "nb": "ba71dbe0bfe56db9c555ff192b936c097e3f3d86b331a1dc06c372a20b4e2d3f",
    "nl": "16458c875b19d50af87b6ebe50e66790fcb0dea81aba3f72084021ac316a6343",
    "nn": "b75f03ca781c57f9fa365cc361680156704ab54adeb931f291aeb5de16b3369f",
    "pl": "adf7e20599376e81e74070eb8d8880a5606aaecdf4682977e6dae157ba655cde",
    "pt": "96112c54cfc5328edfb14de21cb39cfc6dd2f367f85c784d374ca682887eaf0d",
    "ro": "dddfd66d62c69580b59dfb960abf4643596c9453691f6c6ac8001dbc58ca2bdb",
    "sh": "89393bf65520b3e70092059fa77d4f3aceafb68d68fc20ee868400a245152df8",
    "sk": "4934681a20ecc93eca715f1cd4a139799a397cdb47361f24fe5d818823aa303e",
    "sl": "1e141d71a6cf3d114f0e4401dd29d3324d2d3d3baacb8f217f4bb6a5ff6c897d",
    "sq": "011749f831bcacf23af5242eef574e40ffb01207f15e0b542baf389e52479ec3",
    "sr": "3d285a6fa5e0dd1162162a403b5118cb312202c2f3cf4b235c57689dad2708fd",
    "sv": "6bbf5d3c357da1d7b6e4491b0c096595dc3bca2619dccdbf6e8a792bbf21c8fe",
    "tr": "64e7da1a6231587eab5926708df70235b140c6876cf85fcd7cc5e98e8e703373",
    "uk": "f7d774837759711a29622b137416682fc12786500cf8caced9dc20a4ae838a0c",
}


def config(**kw) -> JudgeConfig:
    return JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "http://h:1/v1", "model": "m"}], **kw})


def test_ml_filter_prompts_are_its_sources_byte_for_byte():
    assert ML_FILTER_COMMIT == "6a4364820e8298afa81cd4348904085200359b96"
    assert set(ML_FILTER_SHA256) == {"default", *ML_FILTER_LANGUAGES}
    for code, digest in ML_FILTER_SHA256.items():
        name, template = preset_template("ml-filter", None if code == "default" else code)
        source = template.replace("{text}", "{placeholder}")  # its placeholder; str.format(placeholder=doc) fills it
        assert hashlib.sha256(source.encode("utf-8")).hexdigest() == digest, code
        assert name == ("ml-filter" if code == "default" else f"ml-filter/{code}")
    german = preset_template("ml-filter", "de")[1]
    assert german.startswith("Below is an extract from a web page in German. Evaluate")
    assert "\\n1. Add 1 point" in german and "justify your total score in English" in german  # literal backslash-n
    assert german.endswith("format: 'Educational score: <total points>'")


def test_fineweb_edu_prompt_is_the_published_text():
    name, template = preset_template("fineweb-edu")
    published = template.replace("{text}", "<EXAMPLE>")
    assert name == "fineweb-edu" and template.count("{text}") == 1
    # the three places where the old default differed from the publication
    assert "Grant a fourth point if the extract highly relevant and beneficial" in published
    assert "the concepts aren\u2019t too advanced" in published and "aren't" not in published
    assert "\n\nThe extract: <EXAMPLE>.\n\nAfter examining the extract:\n" in published
    assert published.endswith('- Conclude with the score using the format: "Educational score: <total points>"')
    assert hashlib.sha256(published.encode()).hexdigest() == FINEWEB_EDU_SHA256
    assert prompt_set(config(), config().judges[0]).default.name == "fineweb-edu"


FINEWEB_EDU_SHA256 = "8795af49ef5eb7d150dcefdbf9906b02d1c61ec70a18754ba829f7467a499245"


def test_language_codes_pick_the_ml_filter_variant():
    assert [ml_filter_code(v) for v in ("de", "DE", "deu", "deu_Latn", "ekk", "lvs", "als", "xyz", None)] == [
        "de", "de", "de", "de", "et", "lv", "sq", None, None]
    prompts = prompt_set(config(preset="ml-filter", tokenizer="t"), config(preset="ml-filter", tokenizer="t").judges[0])
    assert prompts.for_language("deu").name == "ml-filter/de" and prompts.for_language("xyz").name == "ml-filter"
    assert prompts.for_language(None).name == "ml-filter"
    own = config(preset="ml-filter", tokenizer="t", prompt_files={"deu": __file__})  # an explicit file still wins
    assert prompt_set(own, own.judges[0]).for_language("deu").name == "test_judge_presets.py"


def test_parsers_follow_their_sources():
    fineweb, mlf = config().parser(), config(preset="ml-filter", tokenizer="t").parser()
    answer = "Educational score: 2\nOn reflection... Educational score: 3.5"
    assert parse_score(answer, parser=fineweb) == (2, None)  # first match
    assert parse_score(answer, parser=mlf) == (3.5, None)  # last match, decimal kept
    assert parse_score("educational score: 4", parser=fineweb) == (4, None)
    assert parse_score("educational score: 4", parser=mlf)[0] is None  # case-sensitive
    assert parse_score("Educational score: 7", parser=mlf)[1] == "unparsable answer: score 7 outside 0-5"
    explicit = config(preset="ml-filter", tokenizer="t", score_match="first", decimal_scores="round").parser()
    assert parse_score(answer, parser=explicit) == (2, None)


def test_ml_filter_cleans_and_truncates_by_tokens(tmp_path):
    from spark_jql.devtools.fake_judge import document_of
    from spark_jql.devtools.tiny_models import build_tokenizer

    assert clean_text("a\r\nb \t\n c") == "a b c"
    with pytest.raises(Exception, match="needs `tokenizer`"):
        config(preset="ml-filter")
    tok = build_tokenizer(tmp_path / "tok")
    prompt = Prompt(*preset_template("ml-filter", "de"))
    overhead = len(tok.encode(prompt.template.replace("{text}", "")))  # this tokenizer has no chat template
    cfg = config(preset="ml-filter", tokenizer=str(tmp_path / "tok"), max_prompt_tokens=overhead + 150)
    client = ChatClient(cfg.judges[0], cfg)
    long = "Water boils at a lower temperature on a high mountain.\nThe air pressure is lower. " * 200
    sent = client.prompt_for(long, prompt)
    doc = document_of(sent)
    assert "\n" not in doc and doc and clean_text(long).startswith(doc[:100])
    assert 100 < len(tok.encode(doc)) <= 150 + 2 < len(tok.encode(clean_text(long)))  # cut to the budget (re-encoding may differ by a token)
    short = "A short page."
    assert client.prompt_for(short, prompt) == prompt.template.replace("{text}", short)
    chars = config(max_chars=10)
    assert ChatClient(chars.judges[0], chars).prompt_for("x" * 50, Prompt("p", "<{text}>")) == "<" + "x" * 10 + ">"
