"""Train JQL regression heads on frozen embeddings (JQL step 3). No Spark here.

A head is ``Linear(d, 1000) -> ReLU -> Linear(1000, 1)`` fitted with MSE to labels
0-5 (one head per LLM judge), on the driver's CPU by default or one GPU.

Two sources, one training loop:

- an in-memory ``(n, d)`` matrix (``train_heads(np.ndarray, ...)``): each head's epoch
  is an exact permutation (or balanced draw) of its training rows;
- an embed-stage parquet (``ParquetEmbeddings``, used by ``train_from_parquet`` and
  ``spark-jql train``): labels and languages are read once (a few bytes per row), the
  embeddings are streamed row group by row group with pyarrow and shuffled through a
  ``shuffle_buffer`` of rows, so memory is bounded by the buffer, not the data set
  (docs/benchmarks.md: 2 million x 768). All heads train in the same pass; validation
  and test sets are streamed the same way. Balanced heads repeat each streamed row
  Poisson(1 / (bins x its bin's share)) times: in expectation the same draw as the
  in-memory sampling with replacement.

Reproducible: the split, the initial weights and the batch order come from
``TrainConfig.seed`` alone (own generators, never the global RNG); a head's weights do
not depend on which other heads were trained with it, and every head gets the same
validation documents, so judges are compared on the same split.

Each epoch's report row has the training MSE and, on the validation set, Spearman,
Pearson and MSE overall and per language (``val_per_language``); early stopping watches
the validation Spearman (better by more than ``min_delta``) and keeps the best weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from spark_jql.config import TrainConfig
from spark_jql.errors import InputError
from spark_jql.method.evaluate import as_labels, regression_metrics
from spark_jql.scoring.heads import (
    HeadWeights,
    save_lightning_checkpoint,
    save_safetensors_head,
)
from spark_jql.scoring.identity import encoder_content

log = logging.getLogger(__name__)


@dataclass
class TrainedHead:
    """A trained head with how it got there."""

    head: HeadWeights
    label: str
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    validation: dict | None = None  # metrics of the kept weights on the validation split
    train_documents: int = 0
    validation_documents: int = 0
    validation_per_language: dict = field(default_factory=dict)
    test: dict | None = None  # metrics of the kept weights on the test set, with "per_language"


# -- data -----------------------------------------------------------------------------------------
def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices; the same for every head trained with this seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def epoch_order(rows: np.ndarray, labels: np.ndarray, balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """Rows for one epoch: a permutation, or a balanced draw (every rounded label value equally likely)."""
    if not balanced:
        return rng.permutation(rows)
    bins = np.rint(labels[rows]).astype(np.int64)
    values, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    weights = 1.0 / (counts[inverse] * len(values))
    return rng.choice(rows, size=len(rows), replace=True, p=weights / weights.sum())


# -- model ----------------------------------------------------------------------------------------
def _linear(in_dim: int, out_dim: int, gen: torch.Generator) -> torch.nn.Linear:
    """nn.Linear with PyTorch's default init, drawn from ``gen`` instead of the global RNG."""
    layer = torch.nn.Linear(in_dim, out_dim)
    bound = 1.0 / math.sqrt(in_dim)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(out_dim, in_dim, generator=gen) * 2 * bound - bound)
        layer.bias.copy_(torch.rand(out_dim, generator=gen) * 2 * bound - bound)
    return layer


def new_model(input_dim: int, hidden_dim: int, seed: int) -> torch.nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.Sequential(_linear(input_dim, hidden_dim, gen), torch.nn.ReLU(), _linear(hidden_dim, 1, gen))


def to_head(model: torch.nn.Sequential, name: str) -> HeadWeights:
    first, _, second = model
    parts = (first.weight, first.bias, second.weight, second.bias)
    return HeadWeights(name, *(p.detach().to("cpu", torch.float32).clone() for p in parts))


@torch.no_grad()
def predict(head: HeadWeights, embeddings: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Scores of one head for (n, d) embeddings; NaN rows stay NaN. The same maths as scoring."""
    x = np.asarray(embeddings, dtype=np.float32)
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        chunk = torch.from_numpy(np.array(x[start : start + batch_size]))  # a writable copy of one chunk
        hidden = torch.relu(torch.nn.functional.linear(chunk, head.w1, head.b1))
        out[start : start + batch_size] = torch.nn.functional.linear(hidden, head.w2, head.b2)[:, 0].numpy()
    return out


# -- training -------------------------------------------------------------------------------------
def _check_head_names(names) -> None:
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.\-]+", n)]
    if bad:
        raise InputError(f"head names {bad} must use only letters, digits, '_', '.' and '-' (they become file and column names)")


class _Head:
    """One head in training: model, optimizer, schedule, best weights so far."""

    def __init__(self, name: str, label: str, dim: int, steps_per_epoch: int, cfg: TrainConfig, device):
        self.name, self.label, self.cfg = name, label, cfg
        self.model = new_model(dim, cfg.hidden_dim, cfg.seed).to(device)
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optim = opt(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        total = max(1, steps_per_epoch * cfg.epochs)
        cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optim, cosine if cfg.lr_schedule == "cosine" else (lambda _: 1.0))
        self.history: list[dict] = []
        self.best = (-math.inf, 0, copy.deepcopy(self.model.state_dict()), None, {})
        self.stale = 0
        self.done = False
        self.loss_sum = 0.0
        self.loss_rows = 0
        self.device = device

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            out = self.model(xb)[:, 0]
        loss = torch.nn.functional.mse_loss(out.float(), yb)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.schedule.step()
        self.loss_sum += float(loss.detach()) * len(yb)
        self.loss_rows += len(yb)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            return self.model(x)[:, 0].float().cpu().numpy()

    def end_epoch(self, epoch: int, seconds: float, metrics: dict | None, per_language: dict) -> None:
        row = {"epoch": epoch, "train_mse": self.loss_sum / max(1, self.loss_rows), "seconds": round(seconds, 3)}
        self.loss_sum, self.loss_rows = 0.0, 0
        if metrics is not None:
            row.update({f"val_{k}": v for k, v in metrics.items() if k != "documents"})
            row["val_per_language"] = per_language
            rho = metrics["spearman"] if metrics["spearman"] is not None else -math.inf
            if self.best[1] == 0 or rho > self.best[0] + self.cfg.min_delta:
                self.best, self.stale = (rho, epoch, copy.deepcopy(self.model.state_dict()), metrics, per_language), 0
            else:
                self.stale += 1
            patience = self.cfg.early_stopping_patience
            self.done = patience is not None and self.stale >= patience
        else:
            self.best = (math.nan, epoch, None, None, {})
        self.history.append(row)
        log.info("head %s epoch %d: %s", self.name, epoch, {k: v for k, v in row.items() if k != "val_per_language"})

    def finish(self) -> None:
        if self.best[2] is not None:
            self.model.load_state_dict(self.best[2])


def _metrics(pred: np.ndarray, truth: np.ndarray, languages: np.ndarray | None) -> tuple[dict, dict]:
    """Overall metrics and per-language metrics (when languages are known) over finite pairs."""
    overall = regression_metrics(pred, truth)
    per_language = {}
    if languages is not None:
        for lang in sorted({str(v) for v in languages}):
            mask = languages.astype(str) == lang
            per_language[lang] = regression_metrics(pred[mask], truth[mask])
    return overall, per_language


def _evaluate(heads: list[_Head], source, rows: np.ndarray, labels: dict[str, np.ndarray], device) -> dict[str, tuple[dict, dict]]:
    """Each head's metrics on ``rows`` of ``source`` (streamed), overall and per language."""
    preds = {h.name: np.full(source.n, np.nan, dtype=np.float32) for h in heads}
    mask = np.zeros(source.n, dtype=bool)
    mask[rows] = True
    for idx, x in source.chunks(mask, None):
        xt = torch.from_numpy(x).to(device)
        for h in heads:
            preds[h.name][idx] = h.predict(xt)
    langs = source.languages
    return {h.name: _metrics(preds[h.name][rows], labels[h.name][rows], None if langs is None else langs[rows]) for h in heads}


def train_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    name: str,
    config: TrainConfig | None = None,
    label: str | None = None,
) -> TrainedHead:
    """Fit one head; rows with a NaN embedding or label are left out."""
    return train_heads(embeddings, {name: labels}, config, label_columns={name: label or name})[name]


def train_heads(
    embeddings,
    labels: dict[str, np.ndarray],
    config: TrainConfig | None = None,
    label_columns: dict[str, str] | None = None,
    languages=None,
    validation=None,
    test=None,
) -> dict[str, TrainedHead]:
    """One head per entry of ``labels`` (head name -> labels aligned with ``embeddings``).

    ``embeddings``: an ``(n, d)`` matrix or a ``ParquetEmbeddings`` (streamed). ``validation`` /
    ``test``: optional ``ParquetEmbeddings`` (or ``MemoryEmbeddings``) holding every head's label
    column (``label_columns``); with a validation set there is no random split.
    """
    cfg = config or TrainConfig()
    _check_head_names(labels)
    source = embeddings if isinstance(embeddings, (ParquetEmbeddings, MemoryEmbeddings)) else MemoryEmbeddings(embeddings, languages=languages)
    label_columns = {n: (label_columns or {}).get(n, n) for n in labels}
    ys = {}
    for name, y in labels.items():
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (source.n,):
            raise InputError(f"labels for head {name!r} have shape {y.shape}, expected ({source.n},)")
        ys[name] = y
    device = torch.device(cfg.device)
    usable_x = source.valid
    if validation is None:
        train_rows, val_rows = split_indices(source.n, cfg.val_fraction, cfg.seed)
    else:
        train_rows, val_rows = np.arange(source.n), np.zeros(0, dtype=np.int64)
    heads, train_sets = [], {}
    for name, y in ys.items():
        usable = usable_x & np.isfinite(y)
        tr = train_rows[usable[train_rows]]
        if len(tr) == 0:
            raise InputError(f"head {name!r}: no training rows with both an embedding and a label (column {label_columns[name]!r})")
        train_sets[name] = tr
        heads.append(_Head(name, label_columns[name], source.dim, math.ceil(len(tr) / cfg.batch_size), cfg, device))
    val_source, val_labels, val_sets = source, ys, {}
    if validation is not None:
        val_source = _same_shape(validation, source, label_columns, "validation")
        val_labels = {n: validation.labels[label_columns[n]] for n in ys}
    for name in ys:
        rows = val_rows if validation is None else np.arange(val_source.n)
        val_sets[name] = rows[(val_source.valid & np.isfinite(val_labels[name]))[rows]]
    all_val = np.unique(np.concatenate(list(val_sets.values()))) if val_sets else np.zeros(0, dtype=np.int64)
    for epoch in range(1, cfg.epochs + 1):
        active = [h for h in heads if not h.done]
        if not active:
            break
        start = time.perf_counter()
        for name, xb, yb in source.minibatches({h.name: (ys[h.name], train_sets[h.name]) for h in active}, epoch, cfg):
            by_name = next(h for h in active if h.name == name)
            by_name.step(torch.from_numpy(xb).to(device), torch.from_numpy(yb.astype(np.float32)).to(device))
        results = _evaluate(active, val_source, all_val, val_labels, device) if len(all_val) else {}
        seconds = time.perf_counter() - start
        for h in active:
            if len(val_sets[h.name]):
                overall, per_language = results[h.name]
                h.end_epoch(epoch, seconds, overall, per_language)
            else:
                h.end_epoch(epoch, seconds, None, {})
    out = {}
    test_results = {}
    for h in heads:
        h.finish()
    if test is not None:
        test_source = _same_shape(test, source, label_columns, "test")
        test_labels = {n: test.labels[label_columns[n]] for n in ys}
        rows = np.flatnonzero(test_source.valid)
        test_results = _evaluate(heads, test_source, rows, test_labels, device)
    for h in heads:
        test_metrics = None
        if h.name in test_results:
            overall, per_language = test_results[h.name]
            test_metrics = {**overall, "per_language": per_language}
        out[h.name] = TrainedHead(
            head=to_head(h.model, h.name), label=h.label, best_epoch=h.best[1], history=h.history, validation=h.best[3],
            train_documents=int(len(train_sets[h.name])), validation_documents=int(len(val_sets[h.name])),
            validation_per_language=h.best[4], test=test_metrics,
        )
    return out


def _same_shape(other, source, label_columns: dict[str, str], role: str):
    if other.dim != source.dim:
        raise InputError(f"{role} embeddings {other.where} have {other.dim} values per row, the training set {source.dim}")
    missing = sorted({c for c in label_columns.values() if c not in other.labels})
    if missing:
        raise InputError(f"{role} set {other.where} lacks label column(s) {missing}; it has {sorted(other.labels)}")
    return other


# -- files ----------------------------------------------------------------------------------------
def save_trained_heads(
    results: dict[str, TrainedHead],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    embedder: str | None = None,
    pooling: str | None = None,
) -> dict:
    """Write each head as ``<name>.safetensors`` + ``.json`` and ``<name>.ckpt`` (JQL Lightning layout).

    Also ``training_report.json`` (config, history, validation metrics) and
    ``heads.yaml``, a ``scorer.heads`` section that annotate can use as is.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The encoder's files by content (when they are on this machine): a scorer checks it, not the folder's name.
    digest = encoder_content(embedder) if embedder else None
    report = {"config": cfg.model_dump(), "embedder": embedder, "embedder_digest": digest, "heads": {}}
    heads_section = []
    for name, r in results.items():
        meta = {"label": r.label, "embedder": embedder, "embedder_digest": digest, "pooling": pooling, "best_epoch": r.best_epoch,
                "validation": r.validation, "train_documents": r.train_documents,
                "validation_documents": r.validation_documents}
        st = save_safetensors_head(r.head, out / f"{name}.safetensors", **meta, test=r.test, train_config=cfg.model_dump())
        hp = {"learning_rate": cfg.learning_rate, "label": r.label, "embedder": embedder or "",
              "embedder_digest": digest or "", "pooling": pooling or "", "seed": cfg.seed}
        ckpt = save_lightning_checkpoint(r.head, out / f"{name}.ckpt", hp)
        report["heads"][name] = {**meta, "validation_per_language": r.validation_per_language, "test": r.test,
                                 "safetensors": str(st), "checkpoint": str(ckpt), "history": r.history}
        heads_section.append({"name": name, "path": str(st.resolve())})
    (out / "training_report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "heads.yaml").write_text(yaml.safe_dump({"heads": heads_section}, sort_keys=False))
    return report


# -- embedding sources ----------------------------------------------------------------------------
def _bins(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, inverse, counts = np.unique(np.rint(y), return_inverse=True, return_counts=True)
    return inverse, counts


class MemoryEmbeddings:
    """An in-memory ``(n, d)`` matrix; each head's epoch is an exact permutation (or balanced draw)."""

    def __init__(self, embeddings, labels: dict[str, np.ndarray] | None = None, languages=None, where: str = "<memory>"):
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise InputError(f"embeddings must be a non-empty (n, d) matrix, got shape {x.shape}")
        self.valid = np.isfinite(x).all(axis=1)
        self.x = np.where(self.valid[:, None], x, 0.0).astype(np.float32, copy=False)
        self.n, self.dim = x.shape
        self.labels = {c: np.asarray(v, dtype=np.float64) for c, v in (labels or {}).items()}
        self.languages = None if languages is None else np.asarray(languages, dtype=object)
        self.where = where

    def minibatches(self, heads: dict[str, tuple[np.ndarray, np.ndarray]], epoch: int, cfg: TrainConfig) -> Iterator:
        if epoch == 1:
            self._rngs = {name: np.random.default_rng(cfg.seed) for name in heads}
        for name, (y, rows) in heads.items():
            order = epoch_order(rows, y, cfg.balanced, self._rngs[name])
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                yield name, self.x[idx], y[idx]

    def chunks(self, mask: np.ndarray, rng, rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        idx = np.flatnonzero(mask & self.valid)
        for i in range(0, len(idx), rows):
            yield idx[i : i + rows], self.x[idx[i : i + rows]]


class ParquetEmbeddings:
    """An embed-stage parquet (file or directory) read in bounded memory.

    Labels and languages are read once (columns other than the embedding); embeddings are
    decoded ``read_batch_rows`` at a time, row group by row group. Row ``i`` is the i-th row
    in (sorted file, row group) order, so masks and labels line up with every pass.
    """

    def __init__(self, path, label_columns: list[str] | None = None, embedding_column: str = "embedding",
                 language_column: str | None = "language", read_batch_rows: int = 8192):
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        self.where, self.column, self.read_rows = str(path), embedding_column, read_batch_rows
        try:
            dataset = ds.dataset(str(path), format="parquet")
            self.files = sorted(dataset.files)
            names = dataset.schema.names
        except (FileNotFoundError, OSError, ValueError) as err:
            raise InputError(f"cannot read embeddings from {path}: {err}") from None
        if not self.files:
            raise InputError(f"{path}: no parquet files")
        if embedding_column not in names:
            raise InputError(f"{path}: no {embedding_column!r} column; columns are {names}")
        if label_columns is None:
            label_columns = [c for c in names if c not in ("id", language_column, embedding_column, "jql_unit")]
        missing = [c for c in label_columns if c not in names]
        if missing:
            raise InputError(f"{path}: label column(s) {missing} not found; columns are {names}")
        self.pieces = []  # (file, row group, first row)
        n = 0
        for f in self.files:
            meta = pq.ParquetFile(f).metadata
            for rg in range(meta.num_row_groups):
                self.pieces.append((f, rg, n))
                n += meta.row_group(rg).num_rows
        self.n = n
        if n == 0:
            raise InputError(f"{path}: no rows")
        extra = [c for c in ([language_column] if language_column in names else [])]
        table = dataset.to_table(columns=list(dict.fromkeys(label_columns + extra)))  # no embeddings: a few bytes per row
        self.labels = {c: as_labels(table[c].to_pandas(), c) for c in label_columns}
        self.languages = None
        if extra:
            encoded = pc.dictionary_encode(table[language_column].cast("string")).combine_chunks()
            names_ = np.array([str(v) for v in encoded.dictionary.to_pylist()] + ["null"], dtype=object)
            self.languages = names_[encoded.indices.fill_null(len(names_) - 1).to_numpy(zero_copy_only=False)]
        del table
        self.dim = None
        self.valid = np.zeros(n, dtype=bool)
        for rows, _ in self._read(np.ones(n, dtype=bool)):  # one pass: widths checked before any training
            self.valid[rows] = True
        if self.dim is None:
            raise InputError(f"{path}: no row has an embedding in column {embedding_column!r}")

    def _decode(self, batch, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers with an embedding, their (k, d) float32 matrix) of one record batch."""
        import pyarrow.compute as pc

        col = batch.column(0)
        ok = col.is_valid().to_numpy(zero_copy_only=False)
        lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        widths = np.unique(lengths[ok]).astype(int) if ok.any() else np.array([], dtype=int)
        if self.dim is None and len(widths):
            self.dim = int(lengths[np.flatnonzero(ok)[0]])  # the first row's width is the set's
        bad = [w for w in widths if w != self.dim]
        if bad:
            row = start + int(np.flatnonzero(ok & (lengths == bad[0]))[0])
            raise InputError(f"{self.where}: column {self.column!r} row {row} has {bad[0]} values, expected {self.dim} "
                             f"(embeddings of one set must all have the same width)")
        values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        x = values.reshape(int(ok.sum()), self.dim or 0)
        finite = np.isfinite(x).all(axis=1)
        rows = start + np.flatnonzero(ok)
        return rows[finite], x[finite]

    def _read(self, mask: np.ndarray, order=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import pyarrow.parquet as pq

        ends = [p[2] for p in self.pieces[1:]] + [self.n]
        handle = (None, None)
        for i in (range(len(self.pieces)) if order is None else order):
            f, rg, first = self.pieces[i]
            if not mask[first : ends[i]].any():
                continue
            if handle[0] != f:
                handle = (f, pq.ParquetFile(f))  # one open file at a time
            start = first
            for batch in handle[1].iter_batches(batch_size=self.read_rows, row_groups=[rg], columns=[self.column]):
                rows, x = self._decode(batch, start)
                start += batch.num_rows
                keep = mask[rows]
                if keep.any():
                    yield rows[keep], x[keep]

    def chunks(self, mask: np.ndarray, rng, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Rows of ``mask`` with an embedding, about ``rows`` at a time; with ``rng``, row groups in random order.

        Rows inside a chunk are not permuted here (that would copy the chunk): ``minibatches``
        shuffles positions and gathers each minibatch.
        """
        order = rng.permutation(len(self.pieces)) if rng is not None else None
        buffer_rows = rows or 65536
        parts, held = [], 0
        for idx, x in self._read(mask, order):
            parts.append((idx, x))
            held += len(idx)
            if held >= buffer_rows:
                chunk = self._join(parts)
                parts, held = [], 0  # dropped before the consumer works on the chunk
                yield chunk
        if parts:
            chunk = self._join(parts)
            parts = []
            yield chunk

    @staticmethod
    def _join(parts) -> tuple[np.ndarray, np.ndarray]:
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def minibatches(self, heads: dict[str, tuple[np.ndarray, np.ndarray]], epoch: int, cfg: TrainConfig) -> Iterator:
        """Every head's minibatches from one shared pass; positions shuffled per chunk, rows gathered per minibatch.

        Balanced heads repeat each row Poisson(1 / (bins x share of its bin)) times.
        """
        if epoch == 1:
            self._shuffle = np.random.default_rng(cfg.seed)
            self._rngs = {name: np.random.default_rng(cfg.seed) for name in heads}
            self._rates = {}
            for name, (y, rows) in heads.items():
                inverse, counts = _bins(y[rows])
                rate = np.full(self.n, np.nan)
                rate[rows] = len(rows) / (counts[inverse] * len(counts))
                self._rates[name] = rate
            self._train = {}
            for name, (_, rows) in heads.items():
                member = np.zeros(self.n, dtype=bool)
                member[rows] = True
                self._train[name] = member
        any_train = np.logical_or.reduce([self._train[n] for n in heads])
        pending = {name: [] for name in heads}  # (chunk x, chunk y, positions) not yet in a minibatch
        held = dict.fromkeys(heads, 0)
        for idx, x in self.chunks(any_train, self._shuffle, cfg.shuffle_buffer):
            for name, (y, _) in heads.items():
                rng = self._rngs[name]
                pos = np.flatnonzero(self._train[name][idx])
                if cfg.balanced:
                    pos = np.repeat(pos, rng.poisson(self._rates[name][idx[pos]]))
                pos = pos[rng.permutation(len(pos))]
                pending[name].append((x, y[idx], pos))
                held[name] += len(pos)
                while held[name] >= cfg.batch_size:
                    xb, yb, pending[name] = _take(pending[name], cfg.batch_size)
                    held[name] -= cfg.batch_size
                    yield name, xb, yb
            del idx, x
        for name in heads:
            if held[name]:
                xb, yb, _ = _take(pending[name], held[name])
                yield name, xb, yb


def _take(parts: list, k: int):
    """The first k rows of a list of (x, y, positions) parts (gathered), and the parts left."""
    xs, ys, got = [], [], 0
    rest = list(parts)
    while got < k and rest:
        x, y, pos = rest[0]
        use = pos[: k - got]
        xs.append(x[use])
        ys.append(y[use])
        got += len(use)
        rest[0] = (x, y, pos[len(use):])
        if len(rest[0][2]) == 0:
            rest.pop(0)
    return np.concatenate(xs), np.concatenate(ys), rest


# -- embeddings written by the embed stage ----------------------------------------------------------
@dataclass
class EmbeddingSet:
    ids: list
    languages: list
    embeddings: np.ndarray  # (n, d) float32
    labels: dict[str, np.ndarray]  # column -> float64 labels (NaN where missing)


def load_embeddings(path: str | Path, label_columns: list[str] | None = None, embedding_column: str = "embedding") -> EmbeddingSet:
    """Read the embed stage's parquet (any pyarrow filesystem) into memory; rows without an embedding are dropped.

    For sets that do not fit in memory use ``ParquetEmbeddings`` / ``train_from_parquet``.
    Label columns may hold numbers or lists of ratings (reduced with the human-label rule).
    ``None``: every column other than id, language and the embedding.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        table = ds.dataset(str(path), format="parquet").to_table()
    except (FileNotFoundError, OSError, ValueError) as err:
        raise InputError(f"cannot read embeddings from {path}: {err}") from None
    if embedding_column not in table.column_names:
        raise InputError(f"{path}: no {embedding_column!r} column; columns are {table.column_names}")
    table = table.filter(pc.is_valid(table[embedding_column]))
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows with an embedding")
    if label_columns is None:
        label_columns = [c for c in table.column_names if c not in ("id", "language", embedding_column, "jql_unit")]
    missing = [c for c in label_columns if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: label column(s) {missing} not found; columns are {table.column_names}")
    emb = table[embedding_column].combine_chunks()
    lengths = pc.list_value_length(emb).to_numpy()
    if len(set(lengths.tolist())) != 1:
        raise InputError(f"{path}: column {embedding_column!r} has rows of different widths {sorted(set(lengths.tolist()))[:5]}")
    matrix = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(emb), int(lengths[0]))
    labels = {c: as_labels(table[c].to_pandas(), c) for c in label_columns}
    get = lambda c: table[c].to_pylist() if c in table.column_names else [None] * table.num_rows  # noqa: E731
    return EmbeddingSet(get("id"), get("language"), matrix, labels)


SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"  # Spark's schema (with column metadata) in a parquet footer


def column_provenance(parquet_file: str | Path, column: str) -> dict:
    """The ``spark_jql`` metadata ``embed`` wrote with ``column`` (embedder, pooling, prefix, ...); {} when none."""
    import pyarrow.parquet as pq

    from spark_jql.schema import PROVENANCE_KEY

    try:
        footer = pq.read_schema(str(parquet_file)).metadata or {}
        fields = json.loads(footer[SPARK_SCHEMA_KEY]).get("fields", []) if SPARK_SCHEMA_KEY in footer else []
    except (OSError, ValueError):
        return {}
    for entry in fields:
        if entry.get("name") == column:
            found = (entry.get("metadata") or {}).get(PROVENANCE_KEY)
            return dict(found) if isinstance(found, dict) else {}
    return {}


def train_from_parquet(
    embeddings: str | Path,
    output: str | Path,
    labels: list[str] | dict[str, str] | None = None,
    config: TrainConfig | None = None,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    embedder: str | None = None,
) -> dict:
    """Train heads on an ``embed`` output and save them: what ``spark-jql train`` runs.

    ``labels``: label columns (head name = column), or head name -> column; None: every label
    column. ``validation`` / ``test``: other embed outputs with the same label columns (no random
    split when a validation set is given). ``embedder``: recorded in each head's metadata; by default the
    embedder (and pooling) ``embed`` recorded with the embedding column. Streams from parquet in bounded memory. Writes the
    heads, ``training_report.json`` and ``heads.yaml`` under ``output``; returns the report.
    """
    cfg = config or TrainConfig()
    specs = dict(labels) if isinstance(labels, dict) else {c: c for c in labels} if labels else None
    source = ParquetEmbeddings(embeddings, list(dict.fromkeys(specs.values())) if specs else None, read_batch_rows=cfg.read_batch_rows)
    specs = specs or {c: c for c in source.labels}
    _check_head_names(specs)
    columns = list(dict.fromkeys(specs.values()))
    sets = {role: ParquetEmbeddings(path, columns, read_batch_rows=cfg.read_batch_rows) if path else None
            for role, path in (("validation", validation), ("test", test))}
    results = train_heads(source, {h: source.labels[c] for h, c in specs.items()}, cfg, specs,
                          validation=sets["validation"], test=sets["test"])
    written = column_provenance(source.files[0], source.column)  # what embed recorded with the column
    report = save_trained_heads(results, output, cfg, embedder or written.get("embedder"), written.get("pooling"))
    report["embedding_provenance"] = written
    report["documents"] = {role: int(s.valid.sum()) for role, s in (("train", source), *sets.items()) if s is not None}
    report["dim"] = source.dim
    Path(output, "training_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
