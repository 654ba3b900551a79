"""The JQL scorer: texts in, per-head scores + aggregate + token counts out.

Knows nothing of Spark. One ``Scorer`` holds the embedder and the fused heads;
``score`` handles one batch, ``score_batches`` a stream of batches, tokenised on a background thread
ahead of the device, the stream's first batch in small pieces so the device starts at once
(:mod:`spark_jql.scoring.feed`).

Documents without text (null, empty or whitespace only) get null scores, 0 tokens
and ``truncated = False``; they are never dropped and never crash a batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from spark_jql import schema
from spark_jql.config import ScorerConfig
from spark_jql.scoring import feed, stored
from spark_jql.scoring.batching import SPLIT_MIN_TOKENS, plan_micro_batches
from spark_jql.scoring.embedder import Embedder, Tokenized
from spark_jql.scoring.heads import HeadSet, check_provenance, load_head_file
from spark_jql.scoring.hub import resolve_head_file

log = logging.getLogger(__name__)

CPU_TOKEN_BUDGET = 16384
GPU_MAX_TOKEN_BUDGET = 262144
_AGGREGATES = {
    "mean": lambda s: s.mean(dim=1),
    "median": lambda s: s.quantile(0.5, dim=1),
    "min": lambda s: s.min(dim=1).values,
    "max": lambda s: s.max(dim=1).values,
}


def clean_texts(texts: Sequence | pd.Series) -> list[str | None]:
    """Normalise a batch: strings stay, null/empty/whitespace-only become ``None``."""
    out: list[str | None] = []
    for i, t in enumerate(texts.tolist() if isinstance(texts, pd.Series) else texts):
        if t is None or t is pd.NA or (isinstance(t, float) and math.isnan(t)):
            out.append(None)
        elif isinstance(t, str):
            out.append(t if t.strip() else None)
        else:
            raise TypeError(f"text at position {i} is a {type(t).__name__}, not a string: {t!r:.80}")
    return out


def estimate_token_budget(embedder: Embedder, max_docs: int) -> int:
    """Tokens per micro-batch (padded or real, by layout): fixed on CPU, from free device memory on GPU."""
    if embedder.device.type != "cuda":
        return max(CPU_TOKEN_BUDGET, embedder.max_length)
    free, _ = torch.cuda.mem_get_info(embedder.device)
    cfg = embedder.model.config
    width = getattr(cfg, "intermediate_size", 4 * embedder.dim)
    bytes_per_token = torch.finfo(embedder.dtype).bits // 8 * (8 * embedder.dim + 4 * width) * 2
    budget = int(0.5 * free / bytes_per_token)
    return int(min(max(budget, embedder.max_length), GPU_MAX_TOKEN_BUDGET))


def scores_frame(head_names: list[str], scores: np.ndarray, aggregate: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({schema.head_column(h): scores[:, j] for j, h in enumerate(head_names)})
    frame[schema.AGGREGATE] = aggregate
    return frame


def aggregate_scores(head_scores: torch.Tensor, how: str) -> torch.Tensor:
    return _AGGREGATES[how](head_scores)


class HeadScorer:
    """Heads only, on the CPU: stored embeddings in, the same score columns out (no encoder is loaded)."""

    def __init__(self, config: ScorerConfig, heads: list | None = None):
        self.config = config
        heads = heads if heads is not None else [load_head_file(resolve_head_file(h), h.name) for h in config.heads]
        self.heads = HeadSet(heads)
        self.head_names = self.heads.names
        self.dim = self.heads.input_dim

    def score(self, values, encoding: str, problems: dict[int, str] | None = None) -> pd.DataFrame:
        """Stored embeddings (bytes or arrays; None for documents without one) -> score_*, jql_score.

        ``problems``: unusable values are recorded there (row -> problem, null scores) instead of raising."""
        matrix, present = stored.decode(values, encoding, self.dim, problems)
        n = len(present)
        scores = np.full((n, len(self.head_names)), np.nan, dtype=np.float32)
        aggregate = np.full(n, np.nan, dtype=np.float32)
        if present.any():
            head_scores = self.heads(torch.from_numpy(matrix[present]))
            scores[present] = head_scores.numpy()
            aggregate[present] = aggregate_scores(head_scores, self.config.aggregate).numpy()
        return scores_frame(self.head_names, scores, aggregate)


class Scorer:
    """Embedder + heads, built once and reused for every batch."""

    def __init__(self, config: ScorerConfig, device: str | torch.device | None = None, with_heads: bool = True):
        """``with_heads=False``: the encoder only (``embed``); no head file is read or downloaded."""
        self.config = config
        heads = [load_head_file(resolve_head_file(h), h.name) for h in config.heads] if with_heads else []
        self.embedder = Embedder(config.embedder, device=device, layout=config.layout)
        self.heads = None
        self.head_names = []
        if heads:
            check_provenance(heads, self.embedder.config.model, self.embedder.config.pooling,
                             self.embedder.config.revision)
            self.heads = HeadSet(heads)
            self.heads.check_input_dim(self.embedder.dim, config.embedder.model)
            self.heads.to(self.embedder.device)
            self.head_names = self.heads.names
        self.columns = schema.output_columns(self.head_names, config.store_embedding != "none")
        budget = config.token_budget
        self.token_budget = budget if isinstance(budget, int) else estimate_token_budget(self.embedder, config.max_batch_docs)
        self.stats = {"docs": 0, "tokens": 0, "padded_tokens": 0, "micro_batches": 0, "oom_splits": 0, "seconds": 0.0}
        log.info(
            "scorer ready: %s on %s (%s, %s layout), heads %s, token budget %d",
            config.embedder.model, self.embedder.device, self.embedder.dtype, self.layout, self.head_names,
            self.token_budget,
        )

    @property
    def device(self) -> torch.device:
        return self.embedder.device

    @property
    def layout(self) -> str:
        """'padded' or 'packed' (``scorer.layout`` resolved for this model and device)."""
        return self.embedder.layout

    @property
    def provenance(self) -> dict:
        """What made this scorer's embeddings, the layout that ran them included."""
        return dict(self.embedder.provenance)

    # -- public API ---------------------------------------------------------
    def score(self, texts: Sequence | pd.Series) -> pd.DataFrame:
        """Score one batch; rows come back in input order (index 0..n-1)."""
        return next(self._score_stream(self._chunks([texts])))

    def score_batches(self, batches: Iterable[Sequence | pd.Series]) -> Iterator[pd.DataFrame]:
        """Score a stream, one frame per batch: a thread tokenises ahead while the device works."""
        yield from self._score_stream(feed.ahead(self._chunks(batches)))

    def embed(self, texts: Sequence | pd.Series) -> np.ndarray:
        """(n, d) float32 L2-normalised embeddings; rows without text are NaN."""
        tokenized = self.tokenize(texts)
        out = np.full((len(tokenized.ids), self.embedder.dim), np.nan, dtype=np.float32)
        rows, parts = [], []
        for idx, emb in self._embed_all(tokenized):
            rows.append(idx)
            parts.append(emb)
        if parts:  # one device->host copy per batch
            out[np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])] = torch.cat(parts).cpu().numpy()
        return out

    def tokenize(self, texts: Sequence | pd.Series) -> Tokenized:
        return self.embedder.tokenize(clean_texts(texts))

    # -- internals ----------------------------------------------------------
    def _chunks(self, batches: Iterable) -> Iterator[feed.Piece]:
        return feed.tokenized_pieces(batches, clean_texts, self.embedder.tokenize)

    def _score_stream(self, pieces: Iterable[feed.Piece]) -> Iterator[pd.DataFrame]:
        """Tokenised pieces in, one frame per batch out (a batch's pieces are scored one after another)."""
        frames = []
        for piece in pieces:
            frame = self._score_tokenized(piece.tokenized)
            if piece.last:
                yield frame if not frames else pd.concat([*frames, frame], ignore_index=True)
                frames = []
            else:
                frames.append(frame)

    def _heads_on(self, embedded: Iterable[tuple[list[int], torch.Tensor]]) -> Iterator[tuple]:
        """(rows, head scores, embedding to keep or None), all still on the device."""
        storage = self.config.store_embedding
        for rows, emb in embedded:
            yield rows, self.heads(emb), (emb.to(stored.STORAGE_DTYPES[storage]) if storage != "none" else None)

    def _score_tokenized(self, tokenized: Tokenized) -> pd.DataFrame:
        """One tokenised batch (or piece), planned in exact length order."""
        start = time.perf_counter()
        parts = list(self._heads_on(self._embed_all(tokenized)))
        frame = self._frame(len(tokenized.ids), parts, tokenized.lengths, tokenized.truncated)
        self.stats["seconds"] += time.perf_counter() - start
        return frame

    def _frame(self, n: int, parts: list, lengths: np.ndarray, truncated: np.ndarray) -> pd.DataFrame:
        """The batch's output frame in row order. Results stay on the device until here: one
        device->host copy (and one sync) per batch, so the host keeps queueing micro-batches."""
        scores = np.full((n, len(self.head_names)), np.nan, dtype=np.float32)
        aggregate = np.full(n, np.nan, dtype=np.float32)
        storage = self.config.store_embedding
        embeddings: list = [None] * n
        if parts:
            head_scores = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            combined = torch.cat([head_scores, aggregate_scores(head_scores, self.config.aggregate)[:, None]], dim=1)
            host = combined.cpu().numpy()
            order = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
            scores[order] = host[:, :-1]
            aggregate[order] = host[:, -1]
            if storage != "none":
                for i, value in zip(order, stored.encode(torch.cat([p[2] for p in parts]), storage)):
                    embeddings[i] = value
        frame = scores_frame(self.head_names, scores, aggregate)
        frame[schema.TOKENS] = np.asarray(lengths).astype(np.int32)
        frame[schema.TRUNCATED] = np.asarray(truncated, dtype=bool)
        if storage != "none":
            frame[schema.EMBEDDING] = pd.Series(embeddings, dtype=object)
        self.stats["docs"] += n
        return frame

    def plan(self, lengths) -> list[list[int]]:
        """Micro-batches (row indices, longest first) for one batch of token lengths.

        Padded: the budget counts rows x longest; packed: real tokens (no padding to avoid by splitting)."""
        if self.layout == "packed":
            return plan_micro_batches(lengths, self.token_budget, self.config.max_batch_docs, cost="real")
        return plan_micro_batches(lengths, self.token_budget, self.config.max_batch_docs, SPLIT_MIN_TOKENS)

    def computed_tokens(self, batch_lengths: list[int]) -> int:
        """Tokens the linear layers run on for one micro-batch: padded rows, or real tokens when packed."""
        if self.layout == "packed":
            return sum(batch_lengths)
        return len(batch_lengths) * max(batch_lengths)

    def _embed_all(self, tokenized: Tokenized) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (row indices, embeddings) per micro-batch, longest first."""
        for batch in self.plan(tokenized.lengths):
            yield from self._embed_with_retry(batch, tokenized.ids, tokenized.lengths)

    def _embed_with_retry(self, batch: list[int], ids, lengths) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``ids[row]`` / ``lengths[row]`` for the rows of ``batch``; on CUDA OOM the micro-batch is halved."""
        try:
            emb = self.embedder.embed([ids[i] for i in batch])
        except torch.cuda.OutOfMemoryError:
            if not self.config.oom_retry or len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            cost = self.computed_tokens([int(lengths[i]) for i in batch])
            self.token_budget = max(self.embedder.max_length, min(self.token_budget, cost) // 2)
            self.stats["oom_splits"] += 1
            log.warning("CUDA OOM on %d docs (%d %s tokens): splitting; token budget now %d", len(batch), cost,
                        self.layout, self.token_budget)
            half = len(batch) // 2
            yield from self._embed_with_retry(batch[:half], ids, lengths)
            yield from self._embed_with_retry(batch[half:], ids, lengths)
            return
        self.stats["micro_batches"] += 1
        self.stats["tokens"] += sum(int(lengths[i]) for i in batch)
        self.stats["padded_tokens"] += self.computed_tokens([int(lengths[i]) for i in batch])
        yield batch, emb
