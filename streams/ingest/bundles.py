"""Records of many requests bound for one partition, gathered into one.

A sidecar's request carries one pod's events, a handful at a time: written
as it comes, each is a Kafka record of a few events, and the worker pays
Faust's cost per record (about 125 us, ``bench/bench_faust_take.py``) for
every few events. The collector's :class:`Bundler` holds each partition's
records for up to ``linger_s`` (or until ``max_events`` or ``max_bytes``)
and writes them as one **bundle**: a JSON array of the v2 batches, keyed by
the first one's client key. Every client key in a bundle is one that Kafka's
partitioner puts on that partition, so each client's events and state stay
together as before; a bundle of one batch is written as that batch.

A request waits until every bundle that carries its records is acknowledged
(or one failed: the request is answered 503 and retried, at least once as
before). Bundles of one partition are handed to the sink in the order they
were closed, so a client's events keep their order across requests. A
request that goes away (its connection closed) does not disturb the bundles
it joined: the others waiting on them still get their answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Record = tuple[bytes, bytes]  # (key, value)
Send = Callable[[Sequence[Record], Sequence[Record]], Awaitable[None]]


class Part(NamedTuple):
    """One record of a request: a v2 batch of the client keys of one partition."""

    partition: int
    partitions: int  # the topic's partition count it was placed for
    key: bytes
    value: bytes  # an encoded v2 batch
    events: int


def bundle_value(values: Sequence[bytes]) -> bytes:
    """The record value of encoded v2 batches: one batch as itself, several as
    a JSON array of them."""
    if len(values) == 1:
        return values[0]
    return b"[" + b",".join(values) + b"]"


@dataclass(slots=True)
class _Bundle:
    key: bytes
    done: asyncio.Future[None]
    timer: asyncio.TimerHandle | None = None
    values: list[bytes] = field(default_factory=list)
    events: int = 0
    size: int = 1  # the array's brackets and commas included


class Bundler:
    """Gathers parts per partition for up to ``linger_s`` into bundles of at
    most ``max_events`` events and about ``max_bytes`` (a part larger than
    that travels alone), and writes each with ``send``."""

    def __init__(
        self,
        send: Send,
        linger_s: float,
        max_events: int,
        max_bytes: int,
        written: Callable[[int], object] | None = None,
    ) -> None:
        self._send = send
        self._written = written  # told each written bundle's number of events
        self.linger_s = linger_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._open: dict[tuple[int, int], _Bundle] = {}
        self._writing: set[asyncio.Task[None]] = set()

    async def send(self, parts: Sequence[Part]) -> None:
        """Returns once every bundle carrying ``parts`` is written; raises what
        the sink raised for any of them."""
        waits: list[asyncio.Future[None]] = []
        for part in parts:
            where = (part.partitions, part.partition)
            bundle = self._open.get(where)
            if bundle is not None and (
                bundle.events + part.events > self.max_events
                or bundle.size + len(part.value) + 1 > self.max_bytes
            ):
                self._close(where)
                bundle = None
            if bundle is None:
                bundle = self._open[where] = self._new(part.key)
                bundle.timer = asyncio.get_running_loop().call_later(
                    self.linger_s, self._close, where
                )
            bundle.values.append(part.value)
            bundle.events += part.events
            bundle.size += len(part.value) + 1
            if bundle.done not in waits:
                waits.append(bundle.done)
            if bundle.events >= self.max_events or bundle.size >= self.max_bytes:
                self._close(where)
        if not waits:
            return
        # asyncio.wait, not gather: a request that is cancelled must not cancel
        # a bundle other requests wait on
        await asyncio.wait(waits)
        for done in waits:
            done.result()

    async def close(self) -> None:
        """Write every open bundle now and wait for all writes."""
        for where in list(self._open):
            self._close(where)
        while self._writing:
            await asyncio.wait(set(self._writing))

    def _new(self, key: bytes) -> _Bundle:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # retrieved here as well, so a bundle whose requests all went away
        # does not log "exception was never retrieved"
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        return _Bundle(key, done)

    def _close(self, where: tuple[int, int]) -> None:
        bundle = self._open.pop(where, None)
        if bundle is None:
            return
        if bundle.timer is not None:
            bundle.timer.cancel()
        # tasks start in the order they are created and reach the sink's
        # ordered send without suspending first: a partition's bundles are
        # handed over in the order they were closed
        task = asyncio.ensure_future(self._write(bundle))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, bundle: _Bundle) -> None:
        try:
            await self._send([(bundle.key, bundle_value(bundle.values))], [])
        except Exception as exc:  # every request waiting on the bundle is answered with it
            bundle.done.set_exception(exc)
        else:
            bundle.done.set_result(None)
            if self._written is not None:
                self._written(bundle.events)
