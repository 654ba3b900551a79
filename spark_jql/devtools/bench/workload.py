"""The benchmark workload: real text windows with lognormal token counts, and a random-weight model bundle."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger("spark_jql.devtools.bench")

def default_corpus_files() -> list[Path]:
    here = Path(__file__).resolve()
    for root in (here.parents[2] / "shared" / "data", Path("/work/shared/data")):
        files = sorted(root.glob("*.jsonl"))
        if files:
            return files
    return []


def read_corpus(files: list[Path], text_field: str = "text") -> list[str]:
    texts: list[str] = []
    for f in files:
        with open(f, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    t = json.loads(line).get(text_field)
                    if isinstance(t, str) and t.strip():
                        texts.append(t)
    if not texts:  # no shared data (e.g. a bare GPU machine): the built-in sample corpus
        from spark_jql.devtools.sample_data import generate_documents

        texts = [d["text"] for d in generate_documents(3000, seed=7, mean_sentences=20)]
    return texts


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def capped_lognormal_mean(mu: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ LogNormal(mu, sigma)."""
    z = (math.log(cap) - mu) / sigma
    return math.exp(mu + sigma**2 / 2) * _norm_cdf(z - sigma) + cap * (1 - _norm_cdf(z))


def solve_mu(mean: float, sigma: float, cap: float) -> float:
    """mu such that the lognormal capped at ``cap`` has mean ``mean``."""
    if mean >= cap:
        raise ValueError(f"mean tokens {mean} must be below the cap {cap}")
    lo, hi = math.log(mean) - 10, math.log(mean) + 10
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if capped_lognormal_mean(mid, sigma, cap) < mean else (lo, mid)
    return (lo + hi) / 2


def target_lengths(n: int, mean: float, sigma: float, cap: int, min_tokens: int, seed: int) -> tuple[np.ndarray, float]:
    mu = solve_mu(mean, sigma, cap)
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(mu, sigma, n)), min_tokens, cap).astype(np.int64)
    return lengths, mu


def lognormal_texts(pool: str, lengths: np.ndarray, chars_per_token: float, seed: int) -> list[str]:
    """One window of real text per target length, starting at a word boundary."""
    rng = np.random.default_rng(seed + 1)
    texts = []
    for n in lengths:
        width = max(8, int(n * chars_per_token))
        start = int(rng.integers(0, max(1, len(pool) - width - 1)))
        space = pool.find(" ", start, start + 64)
        start = space + 1 if space >= 0 else start
        texts.append(pool[start : start + width])
    return texts


def build_bundle(arch: str, cache: Path, corpus: list[str], vocab: int, seed: int, tokenizer_dir: str | None) -> dict:
    """Encoder + tokenizer + three JQL-shaped heads; reused from ``cache`` when present."""
    from spark_jql.devtools.tiny_models import (
        ARCHITECTURES,
        JQL_HEAD_NAMES,
        build_encoder,
        build_heads,
        build_tokenizer,
    )

    spec = ARCHITECTURES[arch]
    tag = f"{arch}-v{vocab}-s{seed}" + ("-exttok" if tokenizer_dir else "")
    root = cache / tag
    enc_dir, head_dir = root / "encoder", root / "heads"
    done = root / "DONE"
    if not done.exists():
        log.info("building %s under %s (once; later runs reuse it)", arch, root)
        enc_dir.mkdir(parents=True, exist_ok=True)
        if tokenizer_dir:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            tokenizer.save_pretrained(str(enc_dir))
        else:
            step = max(1, len(corpus) // 800)
            tokenizer = build_tokenizer(enc_dir, texts=corpus[::step][:800], vocab_size=vocab,
                                        model_max_length=spec["max_position_embeddings"])
        model_vocab = spec["vocab_size"] or len(tokenizer)
        model_vocab = max(model_vocab, len(tokenizer))
        build_encoder(enc_dir, arch, seed=seed, vocab_size=model_vocab, save_tokenizer=False)
        build_heads(head_dir, spec["hidden_size"], JQL_HEAD_NAMES, hidden_dim=1000, seed=seed)
        done.write_text("ok\n")
    return {
        "embedder": {"model": str(enc_dir)},
        "heads": [{"name": n, "path": str(head_dir / f"{n}.ckpt")} for n in JQL_HEAD_NAMES],
    }
