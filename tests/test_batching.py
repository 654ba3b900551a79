"""Length-aware micro-batching: pure index arithmetic, checked as properties."""

from __future__ import annotations

import random

import pytest

from spark_jql.scoring.batching import padding_efficiency, plan_micro_batches


def _check_plan(lengths: list[int], budget: int, max_docs: int, plan: list[list[int]]) -> None:
    present = [i for i, n in enumerate(lengths) if n > 0]
    flat = [i for batch in plan for i in batch]
    # Every non-empty document exactly once, no empty one, no empty micro-batch.
    assert sorted(flat) == present
    assert len(flat) == len(set(flat))
    assert all(batch for batch in plan)
    for batch in plan:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest  # the first row sets the padded width
        assert len(batch) <= max_docs
        assert len(batch) * longest <= budget or len(batch) == 1
    # Longest first over the whole plan; ties keep input order.
    keys = [(-lengths[i], i) for i in flat]
    assert keys == sorted(keys)
    # Greedy: a micro-batch is only closed when the next document would not fit.
    for batch, following in zip(plan, plan[1:]):
        longest = lengths[batch[0]]
        assert (len(batch) + 1) * longest > budget or len(batch) == max_docs
        assert lengths[following[0]] <= longest


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget, max_docs", [(64, 4096), (512, 4096), (4096, 7), (100_000, 4096), (1, 4096)])
def test_plan_properties_random(seed, budget, max_docs):
    rng = random.Random(seed)
    n = rng.randint(0, 300)
    # Long-tailed lengths with some zeros (no text) and some over-budget documents.
    lengths = [0 if rng.random() < 0.15 else max(1, int(rng.lognormvariate(4, 1.2))) for _ in range(n)]
    plan = plan_micro_batches(lengths, budget, max_docs)
    _check_plan(lengths, budget, max_docs, plan)


def test_plan_accepts_numpy_lengths():
    np = pytest.importorskip("numpy")
    lengths = np.array([5, 0, 9, 9, 3, 1], dtype=np.int64)
    plan = plan_micro_batches(lengths, 20, 100)
    _check_plan(list(map(int, lengths)), 20, 100, plan)
    assert plan == [[2, 3], [0, 4, 5]]


def test_plan_small_example():
    # 9+9 rows fit budget 20 as 2x9=18; 5 starts a new batch (3x9=27 > 20); 5,3,1 -> 3x5=15.
    assert plan_micro_batches([5, 0, 9, 9, 3, 1], 20, 100) == [[2, 3], [0, 4, 5]]


def test_over_budget_document_gets_its_own_batch():
    plan = plan_micro_batches([10, 500, 10, 10], 100, 100)
    assert plan == [[1], [0, 2, 3]]


def test_max_docs_caps_rows():
    plan = plan_micro_batches([1] * 10, 1000, 3)
    assert [len(b) for b in plan] == [3, 3, 3, 1]
    _check_plan([1] * 10, 1000, 3, plan)


def test_zero_length_documents_excluded():
    assert plan_micro_batches([0, 0, 0], 100, 10) == []
    assert plan_micro_batches([], 100, 10) == []
    assert plan_micro_batches([0, 4, 0], 100, 10) == [[1]]


@pytest.mark.parametrize("budget, max_docs", [(0, 10), (-5, 10), (10, 0)])
def test_invalid_limits_rejected(budget, max_docs):
    with pytest.raises(ValueError, match="positive"):
        plan_micro_batches([1, 2, 3], budget, max_docs)


def test_padding_efficiency():
    lengths = [4, 2, 0, 3]
    # Batches [0, 3] (padded to 4) and [1]: real 4+3+2 = 9, padded 2*4 + 1*2 = 10.
    assert padding_efficiency(lengths, [[0, 3], [1]]) == pytest.approx(0.9)
    # Everything padded to 4: real 9, padded 3*4 = 12.
    assert padding_efficiency(lengths, [[0, 1, 3]]) == pytest.approx(0.75)
    assert padding_efficiency(lengths, []) == 1.0
    assert padding_efficiency([7, 7, 7], plan_micro_batches([7, 7, 7], 100, 10)) == 1.0


def test_length_sorting_pads_less_than_input_order():
    rng = random.Random(0)
    lengths = [max(1, int(rng.lognormvariate(4, 1.2))) for _ in range(500)]
    plan = plan_micro_batches(lengths, 4096, 4096)
    # The same batch sizes taken in input order, as a length-blind batcher would.
    naive, start = [], 0
    for batch in plan:
        naive.append(list(range(start, start + len(batch))))
        start += len(batch)
    sorted_eff = padding_efficiency(lengths, plan)
    assert sorted_eff > 0.8
    assert sorted_eff > 2 * padding_efficiency(lengths, naive)


# -- closing wide GPU micro-batches where lengths drop (min_tokens / ratio) ------------------------
def _check_split(lengths: list[int], plan: list[list[int]], budget: int, min_tokens: int, ratio: float) -> None:
    flat = [i for b in plan for i in b]
    assert sorted(flat) == [i for i, n in enumerate(lengths) if n > 0]
    for batch in plan:
        longest = lengths[batch[0]]
        assert len(batch) * longest <= budget or len(batch) == 1
        for k in range(1, len(batch)):  # never kept together across a drop once big enough
            assert not (lengths[batch[k]] < ratio * longest and k * longest >= min_tokens)
    for batch, following in zip(plan, plan[1:]):  # closed only when full, or at a drop once big enough
        longest, nxt = lengths[batch[0]], lengths[following[0]]
        full = (len(batch) + 1) * longest > budget
        drop = nxt < ratio * longest and len(batch) * longest >= min_tokens
        assert full or drop


@pytest.mark.parametrize("seed", range(4))
def test_split_properties(seed):
    rng = random.Random(seed)
    lengths = [max(1, int(rng.lognormvariate(5, 1.0))) for _ in range(400)]
    whole = plan_micro_batches(lengths, 50_000, 4096)
    pieces = plan_micro_batches(lengths, 50_000, 4096, min_tokens=2000, ratio=0.9)
    _check_split(lengths, pieces, 50_000, 2000, 0.9)
    assert len(pieces) > len(whole)  # it does split here
    assert padding_efficiency(lengths, pieces) > padding_efficiency(lengths, whole)


def test_split_small_example():
    lengths = [100, 100, 100, 50, 50]

    def plan(min_tokens, ratio=0.9):
        return plan_micro_batches(lengths, 10_000, 100, min_tokens=min_tokens, ratio=ratio)

    # 2 x 100 reaches 200 tokens, but the next one is not shorter; the first 50 is: cut there.
    assert plan(200) == [[0, 1, 2], [3, 4]]
    # Needing 301 tokens: the first 50 joins (3 x 100 = 300 is not enough yet), the second is cut off.
    assert plan(301) == [[0, 1, 2, 3], [4]]
    assert plan(401) == [[0, 1, 2, 3, 4]]
    assert plan(200, ratio=0.4) == [[0, 1, 2, 3, 4]]


def test_split_leaves_cpu_budgets_alone():
    from spark_jql.scoring.batching import SPLIT_MIN_TOKENS
    from spark_jql.scoring.scorer import CPU_TOKEN_BUDGET

    assert CPU_TOKEN_BUDGET <= SPLIT_MIN_TOKENS
    rng = random.Random(1)
    lengths = [max(1, int(rng.lognormvariate(5, 1.2))) for _ in range(500)]
    assert plan_micro_batches(lengths, CPU_TOKEN_BUDGET, 4096, SPLIT_MIN_TOKENS) == plan_micro_batches(
        lengths, CPU_TOKEN_BUDGET, 4096)
