"""Stored embeddings: how ``annotate`` keeps them, and how the heads-only path reads them back.

Spark has no 16-bit float type, so a kept embedding is a ``binary`` value holding the
vector's little-endian float16 or bfloat16 bytes (2 bytes a dimension: 1,536 bytes for
768 dimensions, half of ``array<float>``, and bfloat16 keeps float32's range). The
column's Spark metadata (key ``spark_jql``) names the encoding, the width and the
embedder that made it. Reading also accepts ``array<float>`` / ``array<double>``
columns (``embed``'s output, published embedding datasets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# Largest relative error of one stored component: half a unit in the last place (float16: 2^-11, bfloat16: 2^-8).
RELATIVE_ERROR = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24}


def encode(embeddings: torch.Tensor, storage: str) -> list[bytes]:
    """(n, d) float tensor -> n little-endian byte strings of ``storage`` (float16 / bfloat16)."""
    half = embeddings.detach().to("cpu", STORAGE_DTYPES[storage]).contiguous()
    raw = half.view(torch.int16).numpy().astype("<i2", copy=False)  # the 16 bits as they are
    return [row.tobytes() for row in raw]


def decode(values: Sequence, encoding: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (bytes, arrays or None) -> ((n, dim) float32 matrix, bool mask of rows present).

    A present row of another width is an error naming both widths; it never passes silently.
    """
    n = len(values)
    out = np.zeros((n, dim), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            continue
        row = _row(value, encoding)
        if row.shape[0] != dim:
            raise ValueError(f"stored embedding at row {i} has {row.shape[0]} dimensions, the heads take {dim}")
        out[i] = row
        present[i] = True
    return out, present


def _row(value, encoding: str) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(value), dtype="<u2" if encoding in STORAGE_DTYPES else "<f4")
        if encoding == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32)  # bfloat16 = the top half of a float32
        if encoding == "float16":
            return raw.view("<f2").astype(np.float32)
        return raw.astype(np.float32)
    return np.asarray(value, dtype=np.float32)
