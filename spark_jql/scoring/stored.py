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


def decode(values: Sequence, encoding: str, dim: int, problems: dict[int, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (bytes, arrays or None) -> ((n, dim) float32 matrix, bool mask of rows present).

    A present value that cannot be a ``dim``-wide embedding (another width, empty, a byte length that is not
    whole values) never passes silently: it raises naming the problem, or with ``problems`` is recorded there
    (row index -> problem) and left out of the mask, so the caller can name the document.
    """
    n = len(values)
    out = np.zeros((n, dim), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            continue
        row, problem = _row(value, encoding)
        if problem is None and row.shape[0] != dim:
            problem = f"has {row.shape[0]} dimensions, the heads take {dim}"
        if problem is not None:
            if problems is None:
                raise ValueError(f"stored embedding at row {i} {problem}")
            problems[i] = problem
            continue
        out[i] = row
        present[i] = True
    return out, present


def problem(value, encoding: str, dim: int) -> str | None:
    """What makes one stored value unusable for ``dim``-wide heads, or None (a null value is no problem)."""
    found: dict[int, str] = {}
    decode([value], encoding, dim, found)
    return found.get(0)


def _row(value, encoding: str) -> tuple[np.ndarray | None, str | None]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        size = 2 if encoding in STORAGE_DTYPES else 4
        if len(data) % size:
            return None, f"has {len(data)} bytes, not a whole number of {size}-byte {encoding} values"
        raw = np.frombuffer(data, dtype="<u2" if size == 2 else "<f4")
        if encoding == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32), None  # bfloat16 = the top half of a float32
        if encoding == "float16":
            return raw.view("<f2").astype(np.float32), None
        return raw.astype(np.float32), None
    try:
        return np.asarray(value, dtype=np.float32).reshape(-1), None
    except (TypeError, ValueError) as err:
        return None, f"is not a list of numbers ({err})"
