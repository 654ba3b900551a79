"""A per-process cache for expensive objects (models, detectors), built once per Python worker.

Spark reuses Python workers across tasks (``spark.python.worker.reuse``), so a
module-level cache turns "load per task" into "load per worker". Spark-free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class WorkerCache(Generic[T]):
    """Keyed objects, built on first use under a lock; the oldest is evicted beyond ``capacity``."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self._items: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> tuple[T, bool]:
        """(object, True if this call built it)."""
        item = self._items.get(key)
        if item is not None:
            return item, False
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                return item, False
            item = build()
            while self.capacity is not None and len(self._items) >= self.capacity:
                self._items.pop(next(iter(self._items)))  # dicts keep insertion order: oldest first
            self._items[key] = item
            return item, True
