"""Devtools-only hook: a simulated device for the cluster-simulation bench. Never set it in production.

``SPARK_JQL_SIMULATED_DEVICE=<seconds per 1,000 real tokens>,<log folder>`` (read once, when an
``Embedder`` is built) makes each micro-batch sleep for its real tokens x that rate instead of
running the encoder, and append ``pid, start, end, real tokens`` to ``<log folder>/device-<pid>.tsv``.
A sleep costs no CPU, so ``local[16]`` on a 2-core machine stands for 16 accelerator slots while
tokenisation, Arrow transfer, heads and writes stay real (``python -m spark_jql.devtools.bench
cluster-sim``). The embedding returned is finite, L2-normalised and deterministic, so heads run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

ENV = "SPARK_JQL_SIMULATED_DEVICE"


@dataclass(frozen=True)
class SimulatedDevice:
    seconds_per_1k_tokens: float
    log_dir: str

    def embed(self, ids: list[list[int]], dim: int, device: torch.device) -> torch.Tensor:
        """Sleep for the micro-batch's real tokens, log the interval, return (len(ids), dim) unit vectors."""
        lengths = [len(r) for r in ids]
        tokens = sum(lengths)
        start = time.time()
        time.sleep(tokens * self.seconds_per_1k_tokens / 1000.0)
        end = time.time()
        pid = os.getpid()
        with open(os.path.join(self.log_dir, f"device-{pid}.tsv"), "a", encoding="utf-8") as log:
            log.write(f"{pid}\t{start:.6f}\t{end:.6f}\t{tokens}\n")
        angle = torch.tensor(lengths, dtype=torch.float32)[:, None] * torch.arange(1, dim + 1, dtype=torch.float32) / dim
        return torch.nn.functional.normalize(torch.cos(angle) + 1e-3, p=2, dim=-1).to(device)


def from_env() -> SimulatedDevice | None:
    """The simulated device the environment asks for, or None (the normal case)."""
    raw = os.environ.get(ENV)
    if not raw:
        return None
    rate, _, folder = raw.partition(",")
    try:
        seconds = float(rate)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected '<seconds per 1000 tokens>,<log folder>'") from None
    if seconds < 0 or not folder:
        raise ValueError(f"{ENV}={raw!r}: expected '<seconds per 1000 tokens >= 0>,<log folder>'")
    os.makedirs(folder, exist_ok=True)
    return SimulatedDevice(seconds, folder)
