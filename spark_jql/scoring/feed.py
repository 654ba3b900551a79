"""Feeding the device from a task's first documents instead of after its whole first batch is tokenised.

A task's first micro-batch used to wait until its whole first batch (up to 2,048 documents) was
tokenised, and on a GPU node every task start paid that wait with the device idle. Here a thread
tokenises ahead of the device, and each task's stream of batches starts with small pieces that double
(64, 128, 256, ... documents) until they reach the batch size: the device starts after 64 documents,
and while it works on a piece the thread tokenises the next, larger one. Each piece is planned in exact
length order, as a whole batch is, so only a task's first few pieces pad a little more.

The pieces depend only on the input, never on timing, so reruns give the same micro-batches (and the
same floating-point results).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from spark_jql.scoring.embedder import Tokenized

FIRST_PIECE = 64  # documents tokenised before the device can start on a task
AHEAD_PIECES = 4  # how far the tokenizer may run ahead of the device, in pieces


@dataclass
class Piece:
    """Rows ``offset .. offset + len(tokenized.ids)`` of a batch of ``batch_size`` rows, tokenised."""

    offset: int
    batch_size: int
    tokenized: Tokenized

    @property
    def last(self) -> bool:
        return self.offset + len(self.tokenized.ids) == self.batch_size


def ramp(n: int, size: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) pieces covering ``range(n)`` from a piece of ``size`` rows on, doubling; the next size.

    A remainder of at most twice the current size joins the last piece, so no piece is tiny.
    """
    bounds, start = [], 0
    while start < n:
        end = n if n - start <= 2 * size else start + size
        bounds.append((start, end))
        start, size = end, 2 * size
    return bounds, size


def tokenized_pieces(batches: Iterable, clean: Callable, tokenize: Callable,
                     first: int = FIRST_PIECE) -> Iterator[Piece]:
    """Each batch as tokenised pieces; the stream's first pieces ramp up from ``first`` rows.

    A batch without rows still gives one (empty) piece, so every batch gets its frame.
    """
    size = first
    for batch in batches:
        texts = clean(batch)
        if not texts:
            yield Piece(0, 0, tokenize([]))
            continue
        bounds, size = ramp(len(texts), size)
        for start, end in bounds:
            yield Piece(start, len(texts), tokenize(texts[start:end]))


_DONE = object()


def ahead(items: Iterable, limit: int = AHEAD_PIECES) -> Iterator:
    """``items``, produced on a background thread at most ``limit`` items ahead of the consumer.

    An exception in the producer is raised in the consumer, in order; closing the consumer early (a
    failed or cancelled task) stops the producer at its next item.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, limit))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, err))
            return
        put((True, _DONE))

    thread = threading.Thread(target=produce, name="jql-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = buffer.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
