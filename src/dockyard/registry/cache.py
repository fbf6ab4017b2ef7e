"""A small bounded LRU for hot, cheap-to-recompute metadata on the pull path."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """Least-recently-used eviction, and optionally a time to live: an entry older than ``ttl``
    seconds is a miss, for facts that another process may change without telling us."""

    def __init__(self, capacity: int, ttl: float | None = None) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._data: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, stored = entry
        if self.ttl is not None and time.monotonic() - stored > self.ttl:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        self._data[key] = (value, time.monotonic())
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self._data if predicate(k)]:
            del self._data[key]
