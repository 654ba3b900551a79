"""Train JQL regression heads on frozen embeddings (JQL step 3). No Spark here.

A head is ``Linear(d, 1000) -> ReLU -> Linear(1000, 1)`` fitted with MSE to labels
0-5 (one head per LLM judge). Everything runs on one machine over an in-memory
``(n, d)`` float32 matrix: the driver's CPU by default, or one GPU.

Why this is enough: a head has ~d*1000 weights (0.8 M for d=768), so an epoch over
n documents costs about 6*n*d*1000 FLOPs (~4.6 TFLOP for a million documents,
a minute on a multi-core CPU, seconds on a GPU), and the matrix takes n*d*4 bytes
(3.1 GB per million 768-d embeddings). Beyond a few million rows, sample before
collecting: balanced sampling discards most of the majority labels anyway.

Reproducible: the split, the initial weights and the batch order come from
``TrainConfig.seed`` alone (own generators, never the global RNG), and every head
gets the same validation documents, so judges are compared on the same split.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from spark_jql.config import TrainConfig
from spark_jql.errors import InputError
from spark_jql.method.evaluate import as_labels, regression_metrics
from spark_jql.scoring.heads import HeadWeights, save_lightning_checkpoint, save_safetensors_head

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
def _predict_model(model, x: torch.Tensor, batch_size: int = 65536) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size])[:, 0] for i in range(0, len(x), batch_size)]).cpu().numpy()


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
    embeddings: np.ndarray,
    labels: dict[str, np.ndarray],
    config: TrainConfig | None = None,
    label_columns: dict[str, str] | None = None,
) -> dict[str, TrainedHead]:
    """One head per entry of ``labels`` (head name -> labels aligned with ``embeddings``).

    Heads are trained one after another, each from ``config.seed``: a head's weights
    do not depend on which other heads were trained with it.
    """
    cfg = config or TrainConfig()
    bad = [n for n in labels if not re.fullmatch(r"[A-Za-z0-9_.\-]+", n)]
    if bad:
        raise InputError(f"head names {bad} must use only letters, digits, '_', '.' and '-' (they become file and column names)")
    x_np = np.asarray(embeddings, dtype=np.float32)
    if x_np.ndim != 2 or len(x_np) == 0:
        raise InputError(f"embeddings must be a non-empty (n, d) matrix, got shape {x_np.shape}")
    has_embedding = np.isfinite(x_np).all(axis=1)
    train_rows, val_rows = split_indices(len(x_np), cfg.val_fraction, cfg.seed)
    device = torch.device(cfg.device)
    x = torch.from_numpy(np.where(has_embedding[:, None], x_np, 0.0)).to(device)
    results = {}
    for name, y in labels.items():
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(x_np),):
            raise InputError(f"labels for head {name!r} have shape {y.shape}, expected ({len(x_np)},)")
        usable = has_embedding & np.isfinite(y)
        tr, va = train_rows[usable[train_rows]], val_rows[usable[val_rows]]
        if len(tr) == 0:
            raise InputError(f"head {name!r}: no training rows with both an embedding and a label")
        results[name] = _fit(x, y, tr, va, name, cfg, (label_columns or {}).get(name, name))
    return results


def _fit(x: torch.Tensor, y_np: np.ndarray, tr: np.ndarray, va: np.ndarray, name: str, cfg: TrainConfig, label: str) -> TrainedHead:
    device = x.device
    model = new_model(x.shape[1], cfg.hidden_dim, cfg.seed).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    y = torch.from_numpy(y_np.astype(np.float32)).to(device)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    best = (-math.inf, 0, copy.deepcopy(model.state_dict()), None)
    stale = 0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.from_numpy(epoch_order(tr, y_np, cfg.balanced, rng)).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = torch.nn.functional.mse_loss(model(x[idx])[:, 0], y[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += loss.detach() * len(idx)
        model.eval()
        row = {"epoch": epoch, "train_mse": float(total) / len(order), "seconds": round(time.perf_counter() - start, 3)}
        if len(va):
            metrics = regression_metrics(_predict_model(model, x[torch.from_numpy(va).to(device)]), y_np[va])
            row.update({f"val_{k}": v for k, v in metrics.items() if k != "documents"})
            rho = metrics["spearman"] if metrics["spearman"] is not None else -math.inf
            if rho > best[0] or best[1] == 0:
                best, stale = (rho, epoch, copy.deepcopy(model.state_dict()), metrics), 0
            else:
                stale += 1
        else:
            best = (math.nan, epoch, None, None)
        history.append(row)
        log.info("head %s epoch %d: %s", name, epoch, row)
        if len(va) and cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    return TrainedHead(
        head=to_head(model, name),
        label=label,
        best_epoch=best[1],
        history=history,
        validation=best[3],
        train_documents=int(len(tr)),
        validation_documents=int(len(va)),
    )


# -- files ----------------------------------------------------------------------------------------
def save_trained_heads(
    results: dict[str, TrainedHead],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    embedder: str | None = None,
) -> dict:
    """Write each head as ``<name>.safetensors`` + ``.json`` and ``<name>.ckpt`` (JQL Lightning layout).

    Also ``training_report.json`` (config, history, validation metrics) and
    ``heads.yaml``, a ``scorer.heads`` section that annotate can use as is.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"config": cfg.model_dump(), "embedder": embedder, "heads": {}}
    heads_section = []
    for name, r in results.items():
        meta = {"label": r.label, "embedder": embedder, "best_epoch": r.best_epoch, "validation": r.validation,
                "train_documents": r.train_documents, "validation_documents": r.validation_documents}
        st = save_safetensors_head(r.head, out / f"{name}.safetensors", **meta, train_config=cfg.model_dump())
        hp = {"learning_rate": cfg.learning_rate, "label": r.label, "embedder": embedder or "", "seed": cfg.seed}
        ckpt = save_lightning_checkpoint(r.head, out / f"{name}.ckpt", hp)
        report["heads"][name] = {**meta, "safetensors": str(st), "checkpoint": str(ckpt), "history": r.history}
        heads_section.append({"name": name, "path": str(st.resolve())})
    (out / "training_report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "heads.yaml").write_text(yaml.safe_dump({"heads": heads_section}, sort_keys=False))
    return report


# -- embeddings written by the embed stage ----------------------------------------------------------
@dataclass
class EmbeddingSet:
    ids: list
    languages: list
    embeddings: np.ndarray  # (n, d) float32
    labels: dict[str, np.ndarray]  # column -> float64 labels (NaN where missing)


def load_embeddings(path: str | Path, label_columns: list[str] | None = None, embedding_column: str = "embedding") -> EmbeddingSet:
    """Read the embed stage's parquet (any pyarrow filesystem) into memory; rows without an embedding are dropped.

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
        label_columns = [c for c in table.column_names if c not in ("id", "language", embedding_column)]
    missing = [c for c in label_columns if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: label column(s) {missing} not found; columns are {table.column_names}")
    emb = table[embedding_column].combine_chunks()
    lengths = pc.list_value_length(emb).to_numpy()
    if len(set(lengths.tolist())) != 1:
        raise InputError(f"{path}: embeddings have different lengths {sorted(set(lengths.tolist()))[:5]}")
    matrix = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(emb), int(lengths[0]))
    labels = {c: as_labels(table[c].to_pylist()) for c in label_columns}
    get = lambda c: table[c].to_pylist() if c in table.column_names else [None] * table.num_rows  # noqa: E731
    return EmbeddingSet(get("id"), get("language"), matrix, labels)
