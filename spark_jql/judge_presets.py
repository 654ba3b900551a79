"""Named judge presets: a prompt, a parser and a truncation rule, each reproducing a stated source.

A preset answers "which conventions did these labels follow?" so that the answer can be cited:

``fineweb-edu`` (the default)
    FineWeb-Edu's annotation prompt as published (Penedo et al. 2024, "The FineWeb Datasets",
    arXiv:2406.17557, Appendix F.1, and the HuggingFaceFW/fineweb-edu-classifier model card), byte for
    byte, the document in place of ``<EXAMPLE>``; the FIRST ``Educational score: N`` (case-insensitive,
    Markdown bold allowed) with N an integer 0-5; documents cut to ``max_chars`` characters.
``ml-filter``
    The conventions of the JQL co-authors' annotation pipeline (github.com/Modalities/ml_filter at
    commit ``6a4364820e8298afa81cd4348904085200359b96``, ``data/prompts/fineweb_edu/`` and
    ``src/ml_filter/data_processing/``): the prompt as its YAML loads (numbered criteria, the literal
    two-character ``\\n`` sequences, ``'Educational score: <total points>'`` in single quotes), in
    the target-language variant ("from a web page in German ... justify your total score in English")
    for its 37 languages and the language-free one otherwise; newlines in the document replaced by
    spaces and whitespace runs collapsed; the document truncated by tokens of the judge's tokenizer so
    that the chat-formatted prompt fits ``max_prompt_tokens``; the LAST match of the case-sensitive
    ``Educational score:\\s*(\\d+(?:\\.\\d+)?)``, decimals such as 3.5 kept (the score column is then a
    double). One deviation, stated: a score outside 0-5 is an error here (ml_filter keeps it).

Core layer (data and prompt files only): config.py validates against it, method/judge.py applies it;
docs/jql_method.md keeps the sources and their checksums.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

FINEWEB_EDU = "fineweb-edu"
ML_FILTER = "ml-filter"
PRESET_NAMES = (FINEWEB_EDU, ML_FILTER)
PLACEHOLDER = "{text}"
ML_FILTER_COMMIT = "6a4364820e8298afa81cd4348904085200359b96"
ML_FILTER_MAX_PROMPT_TOKENS = 7692  # its configs: max_tokens 8192 - sampling_params.max_tokens 500

# ml_filter's target-language prompts: ISO 639-1 code -> (the English name its prompt uses, verbatim, ISO 639-3)
ML_FILTER_LANGUAGES = {
    "bg": ("Bulgarian", "bul"), "ca": ("Catalan", "cat"), "cs": ("Czech", "ces"), "da": ("Danish", "dan"),
    "de": ("German", "deu"), "el": ("Greek", "ell"), "en": ("English", "eng"), "es": ("Spanish", "spa"),
    "et": ("Estonian", "est"), "eu": ("Basque", "eus"), "fi": ("Finnish", "fin"), "fr": ("French", "fra"),
    "ga": ("Irish", "gle"), "gl": ("Galician", "glg"), "hr": ("Croatian", "hrv"), "hu": ("Hungarian", "hun"),
    "hy": ("Armenian", "hye"), "is": ("Icelandic", "isl"), "it": ("Italian", "ita"), "lt": ("Lithuanian", "lit"),
    "lv": ("Latvian", "lav"), "mk": ("Macedonian", "mkd"), "mt": ("Maltese", "mlt"), "nb": ("Norwegian Bokmål", "nob"),
    "nl": ("Dutch", "nld"), "nn": ("Norwegian Nynorsk", "nno"), "pl": ("Polish", "pol"), "pt": ("Portuguese", "por"),
    "ro": ("Romanian", "ron"), "sh": ("Serbo-Croation", "hbs"), "sk": ("Slovak", "slk"), "sl": ("Slovenian", "slv"),
    "sq": ("Albanian", "sqi"), "sr": ("Serbian", "srp"), "sv": ("Swedish", "swe"), "tr": ("Turkish", "tur"),
    "uk": ("Ukrainian", "ukr"),
}
# FineWeb2 / lingua (code_style fineweb2) spell some of them by their individual-language codes
_ALIASES = {"ekk": "et", "lvs": "lv", "als": "sq"}
_BY_ISO3 = {iso3: code for code, (_, iso3) in ML_FILTER_LANGUAGES.items()} | _ALIASES


@dataclass(frozen=True)
class Parser:
    """How a score is read from an answer: the first or last ``pattern`` match, integers 0-5, decimals per ``decimals``."""

    pattern: str
    match: str = "first"  # "first" | "last"
    ignore_case: bool = True
    decimals: str = "reject"  # "reject" | "round" (half up) | "keep"
    low: int = 0
    high: int = 5


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    parser: Parser
    truncation: str  # "chars" | "tokens"
    clean_text: bool  # newlines -> spaces, whitespace runs collapsed (ml_filter's _remove_special_strings)


PRESETS = {
    FINEWEB_EDU: Preset(
        FINEWEB_EDU,
        "FineWeb-Edu annotation prompt as published: Penedo et al. 2024 (arXiv:2406.17557) Appendix F.1 and the "
        "HuggingFaceFW/fineweb-edu-classifier model card; first match, integers 0-5, cut to max_chars",
        Parser(r"Educational score:\s*\**\s*(-?\d+(?:[.,]\d+)?)", "first", True, "reject"),
        "chars", False),
    ML_FILTER: Preset(
        ML_FILTER,
        f"github.com/Modalities/ml_filter@{ML_FILTER_COMMIT}: data/prompts/fineweb_edu/educational_prompt*.yaml, "
        "PromptBuilder (token truncation), DocumentProcessor (newlines stripped, last match), EducationalScoreMetric",
        Parser(r"Educational score:\s*(\d+(?:\.\d+)?)", "last", False, "keep"),
        "tokens", True),
}


def _resource(name: str) -> str:
    return resources.files("spark_jql").joinpath(f"resources/{name}").read_text(encoding="utf-8")


def ml_filter_code(language) -> str | None:
    """ml_filter's two-letter code for a language value (``de``, ``deu``, ``deu_Latn``, ``DE``), or None."""
    if language is None:
        return None
    code = re.split(r"[_-]", str(language).strip().lower())[0]
    return code if code in ML_FILTER_LANGUAGES else _BY_ISO3.get(code)


def preset_template(name: str, language=None) -> tuple[str, str]:
    """(prompt name, template with ``{text}``) of preset ``name`` for ``language`` (its own variant, if it has one)."""
    if name == FINEWEB_EDU:
        return FINEWEB_EDU, _resource("prompt_fineweb_edu.txt").replace("<EXAMPLE>", PLACEHOLDER)
    code = ml_filter_code(language)
    if code is None:
        return ML_FILTER, _resource("prompt_ml_filter.txt").replace("{placeholder}", PLACEHOLDER)
    # its per-language files are this template with the language's English name, without the final newline
    text = _resource("prompt_ml_filter_target_language.txt").rstrip("\n")
    return f"{ML_FILTER}/{code}", text.replace("{##TARGET_LANGUAGE##}", ML_FILTER_LANGUAGES[code][0]).replace(
        "{placeholder}", PLACEHOLDER)


def clean_text(text: str) -> str:
    """ml_filter's document clean-up: CR and LF become spaces, then every whitespace run one space."""
    return re.sub(r"\s+", " ", text.replace("\n", " ").replace("\r", " "))
