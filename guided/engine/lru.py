"""A bounded least-recently-used table behind its own lock: the engines' per-grammar memos.

Grammars are shared between threads (`guided.fill_bitmasks`, serving), so every memo of computed
masks or bounds is read and filled under a lock; the value is computed outside it (two threads
may compute the same entry once each; both get equal values).

>>> memo = LockedLru(2)
>>> memo.put("a", 1); memo.put("b", 2); memo.get("a")
1
>>> memo.put("c", 3); memo.get("b") is None, len(memo)  # "b" was the least recently used
(True, 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LockedLru(Generic[K, V]):
    """At most ``size`` entries; a hit makes its entry the most recently used."""

    __slots__ = ("size", "_items", "_lock")

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
