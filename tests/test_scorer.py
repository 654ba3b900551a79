"""The Spark-free scorer against an independent recomputation, and its invariances and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from spark_jql import schema
from spark_jql.config import EmbedderConfig, ScorerConfig
from spark_jql.devtools.sample_data import SENTENCES, generate_documents
from spark_jql.devtools.tiny_models import ARCHITECTURES
from spark_jql.errors import ModelNotAvailableError
from spark_jql.scoring import feed
from spark_jql.scoring.embedder import Embedder
from spark_jql.scoring.scorer import CPU_TOKEN_BUDGET, Scorer

ATOL = 1e-5
BUNDLES = ["gte_bundle", "gte_packed_bundle", "xlmr_bundle"]


@pytest.fixture(scope="session")
def gte_packed_bundle(gte_bundle) -> dict:
    """The GTE bundle scored in the packed layout (``scorer.layout``; the default on CPU is padded)."""
    return {**gte_bundle, "layout": "packed"}


def make_scorer(bundle: dict, max_length: int | None = None, **scorer_options) -> Scorer:
    """A Scorer built through the user path: a config section validated by ScorerConfig."""
    embedder = {**bundle["embedder"], "device": "cpu", "dtype": "float32"}
    if max_length is not None:
        embedder["max_length"] = max_length
    return Scorer(ScorerConfig.model_validate({**bundle, "embedder": embedder, **scorer_options}))


@pytest.fixture(params=BUNDLES)
def bundle(request) -> dict:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    """Sample documents in eight languages and scripts, from one sentence to a few hundred tokens and more."""
    texts = [d["text"] for d in generate_documents(36, seed=5, mean_sentences=4)]
    return texts + ["Hi.", "光合作用", "Ένας πρώτος αριθμός έχει ακριβώς δύο διαιρέτες 🙂"]


# -- independent recomputation ------------------------------------------------------
def reference(bundle: dict, texts: list, max_length: int, use_mask: bool = True) -> dict:
    """The JQL recipe written out plainly: one padded batch, CLS, L2 norm, explicit MLP heads, mean."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = bundle["embedder"]["model"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    present = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    enc = tokenizer([texts[i] for i in present], truncation=True, max_length=max_length, padding="longest",
                    return_tensors="pt")
    with torch.no_grad():
        mask = enc["attention_mask"] if use_mask else None
        cls = model(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state[:, 0]
        emb = torch.nn.functional.normalize(cls, p=2, dim=-1)
        columns = []
        for head in bundle["heads"]:
            state = torch.load(head["path"], map_location="cpu", weights_only=True)["state_dict"]
            hidden, dim = state["layer1.weight"].shape
            mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            mlp[0].weight.copy_(state["layer1.weight"])
            mlp[0].bias.copy_(state["layer1.bias"])
            mlp[2].weight.copy_(state["layer2.weight"])
            mlp[2].bias.copy_(state["layer2.bias"])
            columns.append(mlp(emb)[:, 0])
        head_scores = torch.stack(columns, dim=1)

    n = len(texts)
    out = {
        "embeddings": np.full((n, emb.shape[1]), np.nan, dtype=np.float32),
        "scores": np.full((n, len(columns)), np.nan, dtype=np.float32),
        "aggregate": np.full(n, np.nan, dtype=np.float32),
        "tokens": np.zeros(n, dtype=np.int64),
        "truncated": np.zeros(n, dtype=bool),
    }
    out["embeddings"][present] = emb.numpy()
    out["scores"][present] = head_scores.numpy()
    out["aggregate"][present] = head_scores.mean(dim=1).numpy()
    out["tokens"][present] = enc["attention_mask"].sum(dim=1).numpy()
    full_lengths = [len(tokenizer(texts[i], truncation=False)["input_ids"]) for i in present]
    out["truncated"][present] = np.array(full_lengths) > max_length
    return out


def score_columns(bundle: dict) -> list[str]:
    return [schema.head_column(h["name"]) for h in bundle["heads"]]


def assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame, atol: float = ATOL) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        if a[col].dtype.kind == "f":
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=0, atol=atol, err_msg=col)
        else:
            np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)


@pytest.mark.parametrize("bundle_name", BUNDLES)
def test_scores_match_independent_recomputation(request, bundle_name, docs):
    bundle = request.getfixturevalue(bundle_name)
    max_length = 256
    texts = docs + [None, "", "  \n "]
    ref = reference(bundle, texts, max_length)
    assert ref["truncated"].sum() >= 3, "some documents must exceed max_length for this test to cover truncation"

    scorer = make_scorer(bundle, max_length=max_length, token_budget=1024)
    out = scorer.score(texts)

    assert list(out.columns) == score_columns(bundle) + [schema.AGGREGATE, schema.TOKENS, schema.TRUNCATED]
    for j, col in enumerate(score_columns(bundle)):
        np.testing.assert_allclose(out[col].to_numpy(), ref["scores"][:, j], rtol=0, atol=ATOL, err_msg=col)
    np.testing.assert_allclose(out[schema.AGGREGATE].to_numpy(), ref["aggregate"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(out[schema.TOKENS].to_numpy(), ref["tokens"])
    np.testing.assert_array_equal(out[schema.TRUNCATED].to_numpy(), ref["truncated"])

    embeddings = scorer.embed(texts)
    np.testing.assert_allclose(embeddings, ref["embeddings"], rtol=0, atol=ATOL)

    # The comparison is sharp enough to fail on real mistakes with these tiny random models:
    present = ~np.isnan(ref["aggregate"])
    ref_emb = ref["embeddings"][present]
    # rows swapped between documents,
    assert np.abs(np.roll(ref_emb, 1, axis=0) - ref_emb).max(axis=1).min() > 5 * ATOL
    # and padding that is attended to.
    unmasked = reference(bundle, texts, max_length, use_mask=False)["embeddings"][present]
    assert np.abs(unmasked - ref_emb).max() > 20 * ATOL


@pytest.mark.parametrize("aggregate, fn", [("median", np.median), ("min", np.min), ("max", np.max), ("mean", np.mean)])
def test_aggregates(gte_bundle, aggregate, fn):
    texts = [d["text"] for d in generate_documents(12, seed=9, mean_sentences=2)] + [None]
    out = make_scorer(gte_bundle, max_length=128, aggregate=aggregate).score(texts)
    per_head = out[score_columns(gte_bundle)].to_numpy()
    np.testing.assert_allclose(out[schema.AGGREGATE].to_numpy()[:-1], fn(per_head[:-1], axis=1), rtol=0, atol=1e-6)
    assert np.isnan(out[schema.AGGREGATE].iloc[-1])


def test_output_schema(gte_bundle):
    texts = pd.Series(["Eine Primzahl hat genau zwei Teiler.", None, "Water boils."], index=[10, 20, 30])
    scorer = make_scorer(gte_bundle, max_length=64)
    out = scorer.score(texts)
    assert list(out.columns) == scorer.columns == schema.output_columns(scorer.head_names)
    assert scorer.head_names == [h["name"] for h in gte_bundle["heads"]]
    assert isinstance(out.index, pd.RangeIndex) and list(out.index) == [0, 1, 2]
    dtypes = out.dtypes.to_dict()
    for col in score_columns(gte_bundle) + [schema.AGGREGATE]:
        assert dtypes[col] == np.float32
    assert dtypes[schema.TOKENS] == np.int32
    assert dtypes[schema.TRUNCATED] == np.bool_
    # token_budget 'auto' on CPU: a fixed budget, never below max_length.
    assert scorer.token_budget == max(CPU_TOKEN_BUDGET, scorer.embedder.max_length)


# -- invariances ------------------------------------------------------------------------
def test_permutation_invariance(bundle, docs):
    scorer = make_scorer(bundle, max_length=128)
    texts = docs + [None, ""]
    base = scorer.score(texts)
    base_emb = scorer.embed(texts)
    perm = np.random.default_rng(0).permutation(len(texts))
    assert (perm != np.arange(len(texts))).sum() > len(texts) // 2
    shuffled = scorer.score([texts[i] for i in perm])
    inverse = np.argsort(perm)
    assert_frames_equal(shuffled.iloc[inverse].reset_index(drop=True), base)
    np.testing.assert_allclose(scorer.embed([texts[i] for i in perm])[inverse], base_emb, rtol=0, atol=ATOL)


def test_token_budget_invariance(bundle, docs):
    max_length = 64
    docs = docs[:24]
    texts = docs + [None]
    small = make_scorer(bundle, max_length=max_length, token_budget=max_length)
    large = make_scorer(bundle, max_length=max_length, token_budget=100_000)
    capped = make_scorer(bundle, max_length=max_length, token_budget=100_000, max_batch_docs=3)
    out_small, out_large, out_capped = (s.score(texts) for s in (small, large, capped))

    n_docs = len(docs)
    assert large.stats["micro_batches"] == 1
    assert small.stats["micro_batches"] >= n_docs // 2  # budget = max_length: mostly one document per micro-batch
    assert capped.stats["micro_batches"] == math.ceil(n_docs / 3)
    for s in (small, large, capped):
        assert s.stats["docs"] == len(texts)
        assert s.stats["tokens"] == int(out_large[schema.TOKENS].sum())
    assert small.stats["padded_tokens"] <= small.stats["micro_batches"] * max_length
    if large.layout == "packed":  # the linear layers run on real tokens only
        assert large.stats["padded_tokens"] == large.stats["tokens"]
    else:
        assert large.stats["padded_tokens"] == n_docs * int(out_large[schema.TOKENS].max())

    assert_frames_equal(out_small, out_large)
    assert_frames_equal(out_capped, out_large)
    np.testing.assert_allclose(small.embed(texts), large.embed(texts), rtol=0, atol=ATOL)


def test_score_batches_equals_one_call(bundle, docs):
    scorer = make_scorer(bundle, max_length=128, token_budget=512)
    texts = docs + [None, "  "]
    whole = scorer.score(texts)
    sizes = [7, 0, 13, 1]
    chunks, start = [], 0
    for size in sizes:
        chunks.append(texts[start : start + size])
        start += size
    chunks.append(pd.Series(texts[start:], index=range(100, 100 + len(texts) - start)))

    frames = list(scorer.score_batches(iter(chunks)))
    assert [len(f) for f in frames] == [len(c) for c in chunks]
    for frame in frames:
        assert list(frame.index) == list(range(len(frame)))
    assert_frames_equal(pd.concat(frames, ignore_index=True), whole)
    assert list(scorer.score_batches([])) == []


def test_device_starts_before_the_batch_is_tokenised(gte_bundle, docs):
    """The first micro-batch reaches the device after a few chunks, not after the whole batch; same scores."""
    scorer = make_scorer(gte_bundle, max_length=64, token_budget=256)
    texts = (docs * 40)[:400]
    tokenised, at_first_embed = [0], []
    tokenize, embed = scorer.embedder.tokenize, scorer.embedder.embed

    def counting_tokenize(batch):
        tokenised[0] += len(batch)
        return tokenize(batch)

    def noting_embed(ids):
        at_first_embed.append(tokenised[0])
        return embed(ids)

    scorer.embedder.tokenize, scorer.embedder.embed = counting_tokenize, noting_embed
    streamed = scorer.score(texts)
    assert tokenised[0] == len(texts)
    assert at_first_embed[0] == feed.FIRST_PIECE < len(texts)  # the device waited for the first piece only
    assert_frames_equal(streamed, scorer._score_tokenized(tokenize(texts)))  # exact-order plan: same scores


# -- truncation ------------------------------------------------------------------------
def _text_with_tokens(tokenizer, n: int) -> str:
    """A prefix of sample text that tokenizes to exactly ``n`` ids (special tokens included)."""
    words = " ".join(SENTENCES[("eng", "Latn")] * 4)
    for end in range(1, len(words) + 1):
        candidate = words[:end]
        if candidate.strip() and len(tokenizer(candidate)["input_ids"]) == n:
            return candidate
    raise AssertionError(f"no prefix tokenizes to {n} tokens")


@pytest.mark.parametrize("bundle_name", BUNDLES)
def test_truncation_flags(request, bundle_name):
    from transformers import AutoTokenizer

    bundle = request.getfixturevalue(bundle_name)
    max_length = 32
    tokenizer = AutoTokenizer.from_pretrained(bundle["embedder"]["model"])
    exact, one_less, one_more = (_text_with_tokens(tokenizer, n) for n in (max_length, max_length - 1, max_length + 1))
    long_doc = " ".join(SENTENCES[("deu", "Latn")] * 5)
    assert len(tokenizer(long_doc)["input_ids"]) > 3 * max_length
    texts = [long_doc, exact, "Short text.", one_less, one_more, "光合作用 " * 40]

    out = make_scorer(bundle, max_length=max_length).score(texts)
    tokens = out[schema.TOKENS].tolist()
    truncated = out[schema.TRUNCATED].tolist()
    assert tokens[0] == max_length and truncated[0] is True
    assert tokens[1] == max_length and truncated[1] is False  # exactly max_length tokens: nothing was cut
    assert tokens[2] == len(tokenizer("Short text.")["input_ids"]) < max_length and truncated[2] is False
    assert tokens[3] == max_length - 1 and truncated[3] is False
    assert tokens[4] == max_length and truncated[4] is True
    assert tokens[5] == max_length and truncated[5] is True
    assert out[schema.AGGREGATE].notna().all()


def test_effective_max_length_respects_model_limit(xlmr_bundle):
    # XLM-R positions start after the pad id: 514 positions hold 512 tokens. Asking for JQL's 8192
    # truncates there instead of indexing past the position table.
    limit = ARCHITECTURES["xlmr-tiny"]["max_position_embeddings"] - 2
    scorer = make_scorer(xlmr_bundle, max_length=8192)
    assert scorer.embedder.max_length == limit
    out = scorer.score([" ".join(SENTENCES[("eng", "Latn")] * 40)])
    assert out[schema.TOKENS].iloc[0] == limit and bool(out[schema.TRUNCATED].iloc[0])
    assert np.isfinite(out[schema.AGGREGATE].iloc[0])


# -- missing and odd text ------------------------------------------------------------------
def test_missing_text_gives_null_scores_in_place(gte_bundle):
    scorer = make_scorer(gte_bundle, max_length=64)
    first, second = "La fotosíntesis transforma la luz.", "Простое число имеет ровно два делителя."
    texts = [first, None, "", "   \n\t ", float("nan"), np.nan, second, pd.NA]
    out = scorer.score(pd.Series(texts, dtype=object))
    empty = [1, 2, 3, 4, 5, 7]
    assert out.loc[empty, score_columns(gte_bundle) + [schema.AGGREGATE]].isna().all().all()
    assert (out.loc[empty, schema.TOKENS] == 0).all()
    assert not out.loc[empty, schema.TRUNCATED].any()
    alone = scorer.score([first, second])
    assert_frames_equal(out.loc[[0, 6]].reset_index(drop=True), alone)
    assert out.loc[[0, 6], schema.TOKENS].gt(0).all()

    emb = scorer.embed(texts)
    assert np.isnan(emb[empty]).all() and np.isfinite(emb[[0, 6]]).all()


def test_nullable_string_dtype(gte_bundle):
    scorer = make_scorer(gte_bundle, max_length=64)
    texts = pd.Series(["A prime number has two divisors.", None, "   "], dtype="string")
    out = scorer.score(texts)
    assert out[schema.AGGREGATE].isna().tolist() == [False, True, True]
    assert out[schema.TOKENS].tolist()[1:] == [0, 0]


def test_all_missing_and_empty_batches(gte_bundle):
    scorer = make_scorer(gte_bundle, max_length=64)
    out = scorer.score([None, "", " "])
    assert len(out) == 3 and out[schema.AGGREGATE].isna().all() and (out[schema.TOKENS] == 0).all()
    empty = scorer.score([])
    assert len(empty) == 0 and list(empty.columns) == scorer.columns


@pytest.mark.parametrize("bad, kind", [(42, "int"), (b"bytes", "bytes"), (["a"], "list")])
def test_non_string_raises_with_position(gte_bundle, bad, kind):
    scorer = make_scorer(gte_bundle, max_length=64)
    with pytest.raises(TypeError) as info:
        scorer.score(["fine", None, bad])
    assert "position 2" in str(info.value) and kind in str(info.value)


def test_lone_surrogate_scores(gte_bundle):
    scorer = make_scorer(gte_bundle, max_length=32)
    normal = "Water boils at a lower temperature on a high mountain."
    long_bad = "abc\ud800def " + " ".join(SENTENCES[("fra", "Latn")] * 3)
    out = scorer.score(["abc\ud800def", normal, long_bad])
    assert out[schema.AGGREGATE].notna().all()
    assert out[schema.TOKENS].iloc[0] > 0
    assert out[schema.TOKENS].iloc[2] == 32 and bool(out[schema.TRUNCATED].iloc[2])
    # The surrogate in the batch does not change its neighbours' scores.
    assert_frames_equal(out.iloc[[1]].reset_index(drop=True), scorer.score([normal]))


# -- models that are not available offline ----------------------------------------------------
def test_uncached_hub_embedder_offline(empty_hf_cache):
    with pytest.raises(ModelNotAvailableError) as info:
        Embedder(EmbedderConfig(model="nonexistent-org/nonexistent-model", device="cpu"))
    msg = str(info.value)
    assert "nonexistent-org/nonexistent-model" in msg
    assert "Pre-download" in msg and "local path" in msg and "HF_HUB_OFFLINE" in msg


def test_uncached_hub_embedder_through_scorer(empty_hf_cache, gte_bundle):
    config = ScorerConfig.model_validate({**gte_bundle, "embedder": {"model": "nonexistent-org/nonexistent-model"}})
    with pytest.raises(ModelNotAvailableError, match="nonexistent-org/nonexistent-model"):
        Scorer(config, device="cpu")


def test_missing_local_model_dir_is_named_not_fetched(tmp_path):
    missing = str(tmp_path / "models" / "arctic")
    with pytest.raises(ModelNotAvailableError, match="looks like a local path but does not exist"):
        Embedder(EmbedderConfig(model=missing))


def test_very_long_text_cut_before_tokenizing_gives_same_tokens(gte_bundle):
    """A multi-megabyte document is cut at whitespace before tokenizing; ids and flags are unchanged."""
    bundle = {**gte_bundle, "embedder": {**gte_bundle["embedder"], "max_length": 64}}
    embedder = Scorer(ScorerConfig.model_validate(bundle)).embedder
    sentences = [s for group in SENTENCES.values() for s in group]
    texts = [
        " ".join(sentences) * 40,  # long, spaced: cut applies
        "x" * 3000 + " tail",  # one huge token run: the cut would be too early, whole text is used
        "光合作用把光、水和二氧化碳转化为糖和氧气。" * 200,  # no whitespace: tokenized whole
        "short text",
    ]
    got = embedder.tokenize(texts)
    tok = embedder.tokenizer
    for i, text in enumerate(texts):
        assert got.ids[i] == tok([text], truncation=True, max_length=64)["input_ids"][0]
        assert got.truncated[i] == (len(tok([text])["input_ids"][0]) > 64)
