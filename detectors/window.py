"""Compact sliding-window state shared by the per-client detectors.

Per-client objects are kept small (``__slots__``, plain ints) because a worker
may track hundreds of thousands of clients; every container has a bound.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's ``hash`` is salted per run)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


class SlidingCounts:
    """``metrics`` counters over the last ``buckets`` buckets of ``bucket_s`` seconds."""

    __slots__ = ("_counts", "_head")

    def __init__(self, metrics: int, buckets: int) -> None:
        self._head = -1
        self._counts = [0] * (metrics * buckets)

    def advance(self, ts: float, bucket_s: float, buckets: int) -> int:
        """Move the window to ``ts``; return the bucket index for ``ts`` (or -1 if too old)."""
        idx = int(ts // bucket_s)
        if idx > self._head:
            metrics = len(self._counts) // buckets
            steps = min(idx - self._head, buckets) if self._head >= 0 else buckets
            for k in range(1, steps + 1):
                slot = (self._head + k) % buckets if self._head >= 0 else k - 1
                for m in range(metrics):
                    self._counts[m * buckets + slot] = 0
            self._head = idx
        elif idx <= self._head - buckets:
            return -1  # older than the window: ignored
        return idx % buckets

    def add(self, metric: int, slot: int, buckets: int, value: int = 1) -> None:
        if slot >= 0:
            self._counts[metric * buckets + slot] += value

    def total(self, metric: int, buckets: int) -> int:
        start = metric * buckets
        return sum(self._counts[start : start + buckets])

    def dump(self) -> list[int]:
        """``[head, counts...]``: plain JSON for a changelog snapshot."""
        return [self._head, *self._counts]

    def load(self, data: list[int]) -> None:
        """The state :meth:`dump` gave (of a window of the same shape)."""
        if len(data) != len(self._counts) + 1 or not all(isinstance(x, int) for x in data):
            raise ValueError("a window snapshot of another shape")
        self._head = data[0]
        self._counts = list(data[1:])


class DistinctEstimator:
    """Linear-counting distinct estimate over two rotating bitmaps (~two windows).

    ``bits`` bits per bitmap; accurate to a few percent up to about ``bits``
    distinct values, saturating above. Bitmaps are Python ints (bits/8 bytes).
    """

    __slots__ = ("_cur", "_epoch", "_prev")

    def __init__(self) -> None:
        self._cur = 0
        self._prev = 0
        self._epoch = -1

    def add(self, h: int, ts: float, period_s: float, bits: int) -> None:
        epoch = int(ts // period_s)
        if epoch != self._epoch:
            if epoch > self._epoch:
                self._prev = self._cur if epoch == self._epoch + 1 else 0
                self._cur = 0
                self._epoch = epoch
            else:
                return  # late value from an older epoch
        self._cur |= 1 << (h % bits)

    def dump(self) -> list[int | str]:
        """``[epoch, current bitmap, previous bitmap]`` (bitmaps in hex)."""
        return [self._epoch, format(self._cur, "x"), format(self._prev, "x")]

    def load(self, data: list[int | str]) -> None:
        epoch, cur, prev = data
        if not isinstance(epoch, int) or not isinstance(cur, str) or not isinstance(prev, str):
            raise ValueError("not a distinct-estimator snapshot")
        self._epoch, self._cur, self._prev = epoch, int(cur, 16), int(prev, 16)

    def estimate(self, bits: int) -> float:
        ones = (self._cur | self._prev).bit_count()
        zeros = bits - ones
        if zeros <= 0:
            return float(bits) * math.log(bits)
        return -bits * math.log(zeros / bits)


K = TypeVar("K")
V = TypeVar("V")


class BoundedStates(Generic[K, V]):
    """Per-key state with least-recently-used eviction at ``max_keys``."""

    __slots__ = ("_factory", "_items", "evicted", "max_keys")

    def __init__(self, max_keys: int, factory: Callable[[], V]) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._factory = factory
        self._items: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V:
        items = self._items
        state = items.get(key)
        if state is None:
            state = self._factory()
            items[key] = state
            if len(items) > self.max_keys:
                items.popitem(last=False)
                self.evicted += 1
        else:
            items.move_to_end(key)
        return state

    def peek(self, key: K) -> V | None:
        return self._items.get(key)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        """Set ``key``'s state (the most recently used)."""
        items = self._items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.max_keys:
            items.popitem(last=False)
            self.evicted += 1

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())
