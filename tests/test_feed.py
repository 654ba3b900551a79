"""The tokenizer feed: pieces that ramp up, the background thread, and when the device may start."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from spark_jql.scoring import feed
from spark_jql.scoring.embedder import Tokenized


@pytest.mark.parametrize("n, size", [(1, 64), (64, 64), (128, 64), (129, 64), (200, 64), (2048, 64), (5000, 4096)])
def test_ramp_covers_every_row_once_doubling_without_tiny_pieces(n, size):
    bounds, following = feed.ramp(n, size)
    assert [i for s, e in bounds for i in range(s, e)] == list(range(n))
    sizes = [e - s for s, e in bounds]
    assert all(b == 2 * a for a, b in zip(sizes[:-2], sizes[1:-1]))  # doubling
    assert sizes[0] == min(n, size) or len(sizes) == 1
    assert len(sizes) == 1 or sizes[-1] >= sizes[-2]  # the remainder joins the last piece
    assert following == size * 2 ** len(bounds)


def _fake_tokenize(texts):
    ids = [list(range(len(t.split()))) if t is not None else [] for t in texts]
    return Tokenized(ids, np.array([len(r) for r in ids], dtype=np.int64), np.zeros(len(ids), dtype=bool))


def test_pieces_ramp_up_once_per_stream_and_end_every_batch():
    batches = [[f"w{i} x" for i in range(300)], [], ["a", None, "b c"], [f"d{i}" for i in range(700)]]
    pieces = list(feed.tokenized_pieces(batches, list, _fake_tokenize, first=64))
    # 300 rows: 64, then the 236 left (<= 2 x 128) as one; the empty batch: one empty piece; then whole batches
    assert [(p.offset, len(p.tokenized.ids), p.batch_size) for p in pieces] == [
        (0, 64, 300), (64, 236, 300), (0, 0, 0), (0, 3, 3), (0, 700, 700)]
    assert [p.last for p in pieces] == [False, True, True, True, True]
    assert pieces[1].tokenized.lengths.tolist() == [2] * 236
    assert pieces[3].tokenized.lengths.tolist() == [1, 0, 2]


def test_ahead_yields_everything_in_order_and_runs_ahead():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    stream = feed.ahead(items(), limit=4)
    assert next(stream) == 0
    deadline = time.time() + 5
    while len(produced) < 5 and time.time() < deadline:  # the producer fills the buffer by itself
        time.sleep(0.01)
    assert len(produced) >= 5
    assert list(stream) == list(range(1, 50))


def test_ahead_raises_the_producers_error_after_its_items():
    def items():
        yield 1
        yield 2
        raise TypeError("text at position 3 is a int, not a string")

    stream = feed.ahead(items())
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(TypeError, match="position 3"):
        next(stream)


def test_closing_the_consumer_stops_the_producer():
    def items():
        i = 0
        while True:  # an endless input: only the stop signal ends it
            yield i
            i += 1

    before = threading.active_count()
    stream = feed.ahead(items(), limit=2)
    next(stream)
    stream.close()
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
