"""Token ids exactly as JQL's transformers 4 fast tokenizer gave them: ``tokenizer.json`` run verbatim.

An XLM-R-layout tokenizer.json is built offline from a sentencepiece ``nmt_nfkc`` Unigram trained on FineWeb2
text (Precompiled charsmap + ``Replace(" {2,}", " ")``, Metaspace), and our ids are compared with
``tokenizers.Tokenizer.from_file`` on real documents and whitespace / Unicode probes. transformers 5's
``AutoTokenizer`` (``XLMRobertaTokenizer``, which rebuilds the pipeline) is shown to differ on the same file.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_file

pytest.importorskip("sentencepiece", reason="sentencepiece (test extra) builds the tokenizer")

PROBES = [
    "end  ", "end   ", "  leading", "a  b   c", "tab\there", "new\nline", "cr\r\nlf", "nbsp\u00a0here", "ideo\u3000space",
    "ﬁne ﬂow ﬀ", "ＡＢＣ ｆｕｌｌ ｗｉｄｔｈ", "ｶﾀｶﾅ", "x\u200by", "e\u0301 é", "①②", "“quotes” – dash…", "", " ", "\t\n",
]


def _texts(name: str, n: int) -> list[str]:
    with shared_file(name).open() as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n))]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _texts("fineweb2_spa_Latn_600.jsonl", 600)


def _build(tmp_path_factory, corpus, normalizer: str):
    from spark_jql.devtools.tiny_models import build_sentencepiece_tokenizer

    return build_sentencepiece_tokenizer(tmp_path_factory.mktemp(f"sp_{normalizer}"), corpus[:300], vocab_size=2000,
                                         normalizer=normalizer, model_max_length=8194)


@pytest.mark.parametrize("normalizer", ["precompiled", "nfkc"])
def test_ids_are_tokenizer_json_verbatim(tmp_path_factory, corpus, normalizer):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from spark_jql.scoring.tokenization import load_tokenizer

    folder = _build(tmp_path_factory, corpus, normalizer)
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ours = load_tokenizer(str(folder), None, local=True)
    assert (ours.model_max_length, ours.pad_token_id, ours.mask_token) == (8194, 1, "<mask>")
    texts = PROBES + corpus + _texts("fineweb2_deu_Latn_200.jsonl", 200)
    mismatched = [t for t in texts if ours(t)["input_ids"] != reference.encode(t).ids]
    assert not mismatched, mismatched[:3]
    # transformers 5's rebuilt XLMRobertaTokenizer differs on the same file: the trap this module avoids
    rebuilt = AutoTokenizer.from_pretrained(str(folder))
    differ = sum(rebuilt(t)["input_ids"] != reference.encode(t).ids for t in texts)
    assert differ >= (50 if normalizer == "nfkc" else 1)
    if normalizer == "precompiled":
        assert rebuilt("end  ")["input_ids"] != reference.encode("end  ").ids


def test_embedder_tokenizes_with_tokenizer_json(tmp_path_factory, corpus):
    """The Embedder's ids (prefix, truncation at max_length) are tokenizer.json's, cut at max_length."""
    import shutil

    from tokenizers import Tokenizer

    from spark_jql.config import EmbedderConfig
    from spark_jql.devtools.tiny_models import build_encoder
    from spark_jql.scoring.embedder import Embedder

    folder = _build(tmp_path_factory, corpus, "nfkc")
    model = build_encoder(tmp_path_factory.mktemp("enc"), "gte-tiny", save_tokenizer=False, vocab_size=2001)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(folder / name, model / name)
    embedder = Embedder(EmbedderConfig(model=str(model), device="cpu", max_length=64, prefix="query: "))
    reference = Tokenizer.from_file(str(model / "tokenizer.json"))
    texts = PROBES[:8] + corpus[:40]
    for text, ids in zip(texts, embedder.tokenize(texts).ids):
        full = reference.encode("query: " + text).ids
        assert ids == (full if len(full) <= 64 else full[:63] + [2])
