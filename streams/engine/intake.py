"""The hand-over between the worker's Faust stream and its batch loop.

Why not ``stream.take_events``: it closes its buffer while the agent handles
a batch, so Faust stops draining the records aiokafka has fetched. With tens
of milliseconds of CPU per batch those records sit unconsumed past aiokafka's
prefetch backoff (100 ms); its next fetch request then leaves their
partitions out, and when the partitions it does ask for have nothing new,
the broker holds the request for Faust's fetch wait (1.5 s), during which
nothing else is fetched from that broker. The worker sat idle about 80% of
the time that way (``bench/bench_faust_take.py`` shows the stall without
the worker).

Instead one task reads ``stream.noack().events()`` and only appends to an
``Intake``, and the batch loop takes from it and acks each event after its
batch: records keep being drained whenever the batch loop awaits. The intake
is bounded by items and bytes; a full intake makes the reader wait, which
stops Faust's delivery (backpressure), and one item larger than the byte
bound is still admitted into an empty intake, so nothing is stuck.

A batch waits for more items for at most ``within`` seconds after its
oldest item arrived, not after the batch loop asked: when the loop comes
back from a batch and finds items that have waited that long already, it
takes them at once. A loop that waited the whole window on every batch was
busy for the window plus its handling time per batch, so once it fell
behind (a long collection, a save) it caught up slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IntakeClosed(Exception):
    """The reader stopped: its source ended or failed (the cause is chained)."""


class Intake(Generic[T]):
    """A bounded FIFO between one reader task and one batch loop."""

    def __init__(self, max_items: int, max_bytes: int, size: Callable[[T], int]) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("an intake holds at least one item and one byte")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self._items: deque[tuple[T, int, float]] = deque()  # (item, size, arrived)
        self._bytes = 0
        self._changed = asyncio.Condition()
        self._closed: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _room_for(self, size: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + size <= self.max_bytes

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the intake is full."""
        size = self._size(item)
        async with self._changed:
            await self._changed.wait_for(lambda: self._room_for(size))
            self._items.append((item, size, time.monotonic()))
            self._bytes += size
            self._changed.notify_all()

    async def fill(self, source: AsyncIterable[T]) -> None:
        """Append everything ``source`` yields. When it ends or fails, the
        intake is closed: ``take`` hands out what is left, then raises."""
        try:
            async for item in source:
                await self.put(item)
        except BaseException as exc:
            await self.close(exc)
            raise
        await self.close(EOFError("the source ended"))

    async def close(self, cause: BaseException) -> None:
        async with self._changed:
            self._closed = cause
            self._changed.notify_all()

    async def take(self, max_items: int, max_bytes: int, within: float) -> list[T]:
        """The oldest items, at most ``max_items`` and ``max_bytes`` (but at
        least one): waits for a first one, then until either bound is reached
        or ``within`` seconds after the oldest one arrived, and takes what is
        there. Raises ``IntakeClosed`` once the reader has stopped and nothing
        is left."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._items or self._closed is not None)
            if not self._items:
                raise IntakeClosed("the intake's reader stopped") from self._closed

            def enough() -> bool:
                return (
                    len(self._items) >= max_items
                    or self._bytes >= max_bytes
                    or self._closed is not None
                )

            wait = self._items[0][2] + within - time.monotonic()
            if wait > 0 and not enough():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait_for(enough)
            batch: list[T] = []
            taken = 0
            while self._items and len(batch) < max_items:
                item, size, _ = self._items[0]
                if batch and taken + size > max_bytes:
                    break
                self._items.popleft()
                self._bytes -= size
                taken += size
                batch.append(item)
            self._changed.notify_all()
            return batch
