"""The packed layout: a micro-batch's real tokens in one row, no padding and no (b, 1, n, n) mask.

Every token of the micro-batch sits in one (T, d) tensor; position ids restart at each document
(the three JQL embedders use rotary positions, so a document's tokens see exactly the angles they
see alone), linear layers and norms run on real tokens only, and attention is restricted to each
document through the cumulative lengths ``cu_seqlens``:

- on CUDA with ``torch.nn.attention.varlen.varlen_attn`` (bf16/fp16) the variable-length flash kernel;
- elsewhere a correct fallback: each document's keys and values are laid out in an (N, H, L, D) block
  for ``scaled_dot_product_attention`` with a key mask, inside attention only (the linear layers
  still see real tokens alone).

The forward runs the model's own modules (embeddings, rotary table, each layer's projections, norms
and MLP) rather than its ``forward``: that is what lets the last layer be exact for CLS pooling --
its keys and values come from every token, but its query, attention output, MLP and norms are
computed for the CLS row of each document alone (about 1/L of the linear FLOPs saved). GTE
(arctic-embed-m-v2.0, gte-multilingual-base) and jina-embeddings-v3 share this post-norm layer
layout in transformers 5; other architectures keep the padded layout.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "padded", "packed")
PACKED_MODEL_TYPES = ("gte", "jina_embeddings_v3")  # post-norm rotary encoders with q/k/v/o_proj and an `mlp`
_LAYER_PARTS = ("self_attn", "post_attention_layernorm", "mlp", "post_mlp_layernorm")


def supports_packed(model) -> bool:
    """Whether ``model`` is an encoder the packed forward knows (by model type and module layout)."""
    if getattr(model.config, "model_type", None) not in PACKED_MODEL_TYPES:
        return False
    if not all(hasattr(model, name) for name in ("embeddings", "rotary_emb", "layers")):
        return False
    return all(hasattr(layer, part) for layer in model.layers for part in _LAYER_PARTS)


def _varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_available(device: torch.device, dtype: torch.dtype) -> bool:
    """The flash variable-length kernel can run: CUDA, a half-precision dtype, and a torch that has it."""
    return device.type == "cuda" and dtype in (torch.bfloat16, torch.float16) and _varlen() is not None


def resolve_layout(setting: str, model, device: torch.device, dtype: torch.dtype) -> str:
    """'padded' or 'packed' for a layout setting; ``auto`` packs only where variable-length attention runs."""
    if setting not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {setting!r}")
    if setting == "padded":
        return "padded"
    if setting == "packed":
        if not supports_packed(model):
            raise ValueError(
                f"scorer.layout='packed' is not available for model_type {getattr(model.config, 'model_type', None)!r} "
                f"(packed: {', '.join(PACKED_MODEL_TYPES)}); use 'auto' or 'padded'"
            )
        return "packed"
    return "packed" if supports_packed(model) and varlen_available(device, dtype) else "padded"


@dataclass
class Packed:
    """One micro-batch in the packed layout (host tensors; pinned when bound for CUDA)."""

    input_ids: torch.Tensor  # (T,) int64
    position_ids: torch.Tensor  # (T,) int64, 0 at each document's first token
    cu_seqlens: torch.Tensor  # (N + 1,) int32, cumulative lengths
    doc_ids: torch.Tensor  # (T,) int64, the document each token belongs to
    lengths: np.ndarray  # (N,) int64, on the host
    max_length: int

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


def pack(ids: list[list[int]], pin: bool = False) -> Packed:
    """Concatenate documents' ids; positions restart at each document."""
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    if not len(ids) or lengths.min() < 1:
        raise ValueError("pack needs at least one document and no empty document")
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    positions = np.arange(len(flat), dtype=np.int64) - np.repeat(starts[:-1], lengths)
    doc_ids = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
    tensors = [torch.from_numpy(a) for a in (flat, positions, starts.astype(np.int32), doc_ids)]
    if pin:
        tensors = [t.pin_memory() for t in tensors]
    return Packed(*tensors, lengths=lengths, max_length=int(lengths.max()))


class DocumentAttention:
    """Attention restricted to each document of a packed micro-batch; built once, used by every layer.

    ``__call__(q, k, v, scale, cls_only)``: q (Tq, H, D), k and v (T, H, D) -> (Tq, H, D), where Tq is T,
    or N (one query per document, its first token) when ``cls_only``.
    """

    def __init__(self, packed: Packed, device: torch.device, use_varlen: bool):
        self.n, self.max_length, self.total = len(packed.lengths), packed.max_length, packed.tokens
        self.varlen = _varlen() if use_varlen else None
        self.cu_seqlens = packed.cu_seqlens.to(device, non_blocking=True)
        if self.varlen is not None:
            self.cu_queries = torch.arange(self.n + 1, dtype=torch.int32, device=device)
            self._scale_arg = "scale" in inspect.signature(self.varlen).parameters
            return
        # fallback: where each real token sits in an (N * L) block, and which keys are real
        lengths = torch.from_numpy(packed.lengths)
        self.block_index = (packed.doc_ids * self.max_length + packed.position_ids).to(device, non_blocking=True)
        ragged = bool((packed.lengths != self.max_length).any())
        key_mask = torch.arange(self.max_length)[None, :] < lengths[:, None]
        self.key_mask = key_mask[:, None, None, :].to(device, non_blocking=True) if ragged else None

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, cls_only: bool) -> torch.Tensor:
        if self.varlen is not None:
            return self._flash(q, k, v, scale, cls_only)
        heads, dim = k.shape[1], k.shape[2]
        k_block, v_block = self._block(k), self._block(v)
        q_block = q[:, :, None, :] if cls_only else self._block(q)  # (N, H, 1 or L, D)
        out = torch.nn.functional.scaled_dot_product_attention(q_block, k_block, v_block, attn_mask=self.key_mask,
                                                               scale=scale)
        if cls_only:
            return out[:, :, 0, :]
        return out.transpose(1, 2).reshape(self.n * self.max_length, heads, dim)[self.block_index]

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        """(T, H, D) -> (N, H, L, D), zeros where a document is shorter than L (masked as keys, dropped as queries)."""
        block = x.new_zeros(self.n * self.max_length, x.shape[1], x.shape[2]).index_copy_(0, self.block_index, x)
        return block.view(self.n, self.max_length, x.shape[1], x.shape[2]).transpose(1, 2)

    def _flash(self, q, k, v, scale, cls_only):
        cu_q, max_q = (self.cu_queries, 1) if cls_only else (self.cu_seqlens, self.max_length)
        if self._scale_arg:
            return self.varlen(q, k, v, cu_q, self.cu_seqlens, max_q, self.max_length, scale=scale)
        q = q * (scale * q.shape[-1] ** 0.5)  # older varlen_attn: always 1/sqrt(D); fold any other scale into q
        return self.varlen(q, k, v, cu_q, self.cu_seqlens, max_q, self.max_length)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (T, H, D) with per-token (T, D) cos/sin (transformers' ``rotate_half`` convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def _layer(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: DocumentAttention,
           rows: torch.Tensor | None) -> torch.Tensor:
    """One post-norm encoder layer on packed tokens; with ``rows``, outputs only those rows (keys over all)."""
    attn = layer.self_attn
    dim = attn.head_dim
    x_out = x if rows is None else x[rows]
    q = attn.q_proj(x_out).view(x_out.shape[0], -1, dim)
    k = attn.k_proj(x).view(x.shape[0], -1, dim)
    v = attn.v_proj(x).view(x.shape[0], -1, dim)
    q = _rotate(q, cos if rows is None else cos[rows], sin if rows is None else sin[rows])
    k = _rotate(k, cos, sin)
    out = attend(q, k, v, attn.scaling, cls_only=rows is not None)
    hidden = layer.post_attention_layernorm(x_out + attn.o_proj(out.reshape(x_out.shape[0], -1)))
    return layer.post_mlp_layernorm(hidden + layer.mlp(hidden))


def forward(model, packed: Packed, pooling: str, device: torch.device, use_varlen: bool) -> torch.Tensor:
    """(N, d) float32 pooled last hidden state of a packed micro-batch (CLS, or mean over each document)."""
    input_ids = packed.input_ids.to(device, non_blocking=True)[None]
    position_ids = packed.position_ids.to(device, non_blocking=True)[None]
    attend = DocumentAttention(packed, device, use_varlen)
    x = model.embeddings(input_ids=input_ids, position_ids=position_ids)
    cos, sin = (t[0] for t in model.rotary_emb(x, position_ids))
    x = x[0]
    layers = model.layers[: model.config.num_hidden_layers]
    starts = attend.cu_seqlens[:-1].long()
    for i, layer in enumerate(layers):
        cls_last = pooling == "cls" and i == len(layers) - 1
        x = _layer(layer, x, cos, sin, attend, starts if cls_last else None)
    if pooling == "cls":
        return x.float() if len(layers) else x[starts].float()
    doc = packed.doc_ids.to(device, non_blocking=True)
    sums = torch.zeros(attend.n, x.shape[-1], dtype=torch.float32, device=device).index_add_(0, doc, x.float())
    return sums / torch.from_numpy(packed.lengths).to(device, torch.float32)[:, None]
