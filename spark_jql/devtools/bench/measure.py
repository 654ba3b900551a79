"""Measurement helpers: device peaks, memory high-water marks, model shapes, FLOPs and result rows."""

from __future__ import annotations

import logging
import os
import resource
import threading
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("spark_jql.devtools.bench")

ARCH_CHOICES = ("arctic-embed-m-v2.0", "gte-small", "gte-tiny")

# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIE": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
}

REFERENCE_DOCS_PER_MIN = 11_000  # JQL paper: one A100, docs of ~690 tokens
TARGET_DOCS_PER_MIN = 120_000


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak device memory (CUDA allocator) or, on CPU, peak process RSS sampled every 10 ms."""

    def __init__(self, device):
        self.device = device
        self.peak = 0
        self.base = 0
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.base = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())
        return False


@dataclass
class ModelShape:
    layers: int
    hidden: int
    params_non_embedding: int
    params_total: int
    head_flops_per_doc: int
    kv_params_per_layer: int = 0  # key and value projections (weights and biases) of one layer

    def flops(self, n: np.ndarray | int, cls_exact: bool = False) -> np.ndarray | float:
        """Encoder FLOPs for documents of ``n`` tokens; ``cls_exact``: the last layer for the CLS row only
        (its key/value projections still over all ``n`` tokens, attention for one query)."""
        n = np.asarray(n, dtype=np.float64)
        full = 2.0 * self.params_non_embedding * n + 4.0 * self.layers * self.hidden * n**2
        if not cls_exact or not self.layers:
            return full
        per_layer = self.params_non_embedding / self.layers
        rest = per_layer - self.kv_params_per_layer  # q, o, MLP, norms: one row instead of n
        saved = 2.0 * rest * (n - 1) + 4.0 * self.hidden * (n**2 - n)
        return full - saved

    def model_flops(self, lengths: np.ndarray, cls_exact: bool = False) -> float:
        return float(self.flops(lengths, cls_exact).sum() + self.head_flops_per_doc * len(lengths))


def arch_shape(arch: str, heads: int = 3, head_hidden: int = 1000) -> ModelShape:
    """FLOP shape of a named architecture without building it (GTE: gated MLP, biased projections)."""
    from spark_jql.devtools.tiny_models import ARCHITECTURES

    spec = ARCHITECTURES[arch]
    d, i, layers = spec["hidden_size"], spec["intermediate_size"], spec["num_hidden_layers"]
    per_layer = 4 * d * d + 4 * d + 3 * d * i + d + 4 * d
    embed = (spec["vocab_size"] or 0) * d + 3 * d
    return ModelShape(layers, d, layers * per_layer, layers * per_layer + embed, heads * 2 * (d * head_hidden + head_hidden),
                      2 * (d * d + d))


def model_shape(scorer) -> ModelShape:
    model = scorer.embedder.model
    total = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for name, p in model.named_parameters() if name.startswith("embeddings."))
    cfg = model.config
    heads = 2 * scorer.heads.w1.numel() + 2 * scorer.heads.w2.numel()
    kv = 0
    layers = getattr(model, "layers", None)
    if layers is not None and hasattr(layers[0], "self_attn"):
        attn = layers[0].self_attn
        kv = sum(p.numel() for proj in (attn.k_proj, attn.v_proj) for p in proj.parameters())
    return ModelShape(int(cfg.num_hidden_layers), int(cfg.hidden_size), total - embed, total, int(heads), int(kv))


@dataclass
class Result:
    name: str
    docs: int
    seconds: float
    real_tokens: int
    computed_tokens: int | None
    model_flops: float
    computed_flops: float | None
    peak_memory_bytes: int | None
    oom_docs: int = 0
    micro_batches: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds else float("nan")

    def row(self, peak_tflops: float | None) -> dict:
        out = {
            "name": self.name,
            "docs": self.docs,
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 2),
            "docs_per_min": round(self.docs_per_s * 60, 1),
            "tokens_per_s": round(self.real_tokens / self.seconds, 1) if self.seconds else None,
            "padding_efficiency": round(self.real_tokens / self.computed_tokens, 4) if self.computed_tokens else None,
            "peak_memory_gib": round(self.peak_memory_bytes / 2**30, 3) if self.peak_memory_bytes is not None else None,
            "model_tflops_per_s": round(self.model_flops / self.seconds / 1e12, 4) if self.seconds else None,
            "mfu": round(self.model_flops / self.seconds / (peak_tflops * 1e12), 4) if peak_tflops and self.seconds else None,
            "hfu_computed": (
                round(self.computed_flops / self.seconds / (peak_tflops * 1e12), 4)
                if peak_tflops and self.seconds and self.computed_flops
                else None
            ),
            "oom_docs": self.oom_docs,
        }
        if self.micro_batches is not None:
            out["micro_batches"] = self.micro_batches
        out.update(self.extra)
        return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
