"""Length-aware micro-batching: pad little, and never exceed a token budget.

Pure index arithmetic with no torch or Spark, so it is easy to reason about and
test. Documents are sorted longest first (the allocator meets the largest shapes
first) and a micro-batch grows while ``rows x longest <= token_budget``.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_micro_batches(lengths: Sequence[int], token_budget: int, max_docs: int) -> list[list[int]]:
    """Split document indices into micro-batches, longest documents first.

    Each micro-batch's padded size (rows x its longest length) is at most
    ``token_budget``; a single document longer than the budget still gets its own
    micro-batch (the config forbids budgets below ``max_length``). Indices with
    length 0 (no text) are left out: callers give them null scores.
    """
    if token_budget < 1 or max_docs < 1:
        raise ValueError(f"token_budget and max_docs must be positive, got {token_budget}, {max_docs}")
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_docs):
            batches.append(current)
            current = []
        if not current:
            longest = lengths[i]
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padding_efficiency(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Real tokens / computed (padded) tokens over a plan."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real / padded if padded else 1.0
