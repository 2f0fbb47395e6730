"""Whole fetches of a topic handed to one coroutine: Faust's consumer, batched.

Faust delivers every message on its own: per record it asks the consumer
thread for the partition's high-water mark, builds a ``ConsumerMessage``,
tracks it in a weak set, awaits ``wait_first(callback(message),
suspend_flow.wait())`` (two tasks and an ``asyncio.wait``), queues it into the
stream, and acknowledges it under a lock. On this kind of machine that caps
an agent that does nothing at about 12,000 events/s, below what the detectors
themselves sustain.

:class:`BatchApp` keeps everything else of Faust (group membership and the
partition assignor, changelog-backed tables and their recovery, the producer,
offset bookkeeping and commits, the web server) and changes one thing: the
records of topics registered with :meth:`BatchApp.batch_topic` are given to
their handler as one list per fetch, as the Kafka client returned them.
Records of other topics (table changelogs during recovery, anything an agent
reads) take Faust's usual path.

Delivery contract, the same as an agent's with acks: a batch counts as in
flight from the fetch (a rebalance waits for it, as it waits for an agent's
unacknowledged events) and its offsets are acknowledged together after the
handler returns, so Faust commits an offset only once everything before it
was handled and the producer was flushed. The handler runs shielded from the
fetcher's cancellation, so a rebalance or shutdown never abandons half a
batch; if it raises, the worker crashes and the batch is read again after a
restart.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from aiokafka.structs import ConsumerRecord
from faust.events import Event
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


class BatchConsumer(driver.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
        handlers = cast(BatchApp, self.app).batch_handlers
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        commit_every = self._commit_every
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # as Faust's getmany: back to the committed offsets
                    continue
                generation = self.app.consumer_generation_id
                batches: dict[str, list[tuple[TP, Sequence[ConsumerRecord]]]] = {}
                for tp, recs in records.items():
                    if generation != self.app.consumer_generation_id or not self.flow_active:
                        break  # a rebalance started: the rest is read again after it
                    if (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    fresh = await self._take_fresh(tp, recs)
                    if not fresh:
                        continue
                    if tp.topic in handlers:
                        batches.setdefault(tp.topic, []).append((tp, fresh))
                    else:
                        await self._deliver_one_by_one(tp, fresh)
                for topic, parts in batches.items():
                    await asyncio.shield(self._handle(handlers[topic], parts))
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise

    async def _take_fresh(self, tp: TP, recs: Sequence[ConsumerRecord]) -> list[ConsumerRecord]:
        """Records past the last one delivered; gaps in offsets are recorded for commits."""
        last = self._read_offset[tp]
        fresh = [r for r in recs if last is None or r.offset >= last]
        if fresh and self.app.topics.acks_enabled_for(tp.topic):
            prev = last
            for r in fresh:
                if prev and r.offset - prev > 1:  # compacted away or a transaction marker
                    await self._add_gap(tp, prev + 1, r.offset)
                prev = r.offset
        if fresh:
            self._read_offset[tp] = fresh[-1].offset
        return fresh

    async def _deliver_one_by_one(self, tp: TP, recs: list[ConsumerRecord]) -> None:
        for r in recs:
            await self.wait_first(self.callback(self._to_message(tp, r)), self.suspend_flow.wait())

    async def _handle(
        self, handler: BatchHandler, parts: list[tuple[TP, Sequence[ConsumerRecord]]]
    ) -> None:
        # One message stands for the whole batch in Faust's set of unacknowledged
        # messages: a rebalance waits until it is acknowledged below.
        tp, last = parts[-1][0], parts[-1][1][-1]
        in_flight = self._to_message(tp, last)
        self._unacked_messages.add(in_flight)
        try:
            await handler([r for _, recs in parts for r in recs])
            for tp, recs in parts:
                self._ack_offsets(tp, [r.offset for r in recs])
        finally:
            self._unacked_messages.discard(in_flight)
            notify(self._waiting_for_ack)

    def _ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """``Consumer.ack`` for many offsets of one partition at once."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            new = [o for o in offsets if (committed is None or o >= committed) and o not in index]
            index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)


class BatchTransport(driver.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose registered topics arrive as whole fetches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> BatchTransport:
        return BatchTransport(self.conf.broker_consumer, self)

    def batch_topic(self, topic: faust.TopicT, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` and give each fetch of it to ``handler``."""
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)

    def as_event(self, record: ConsumerRecord) -> Event:
        """Make ``record`` Faust's current event, as a stream does before each event.

        Table writes need it: a table key's changelog partition is the partition
        of the event being processed. Faust holds it by weak reference, so the
        caller keeps the returned event while it writes.
        """
        tp = TP(record.topic, record.partition)
        message = cast(BatchConsumer, self.consumer)._to_message(tp, record)
        event = Event(self, record.key, record.value, message.headers, message)
        _current_event.set(weakref.ref(event))
        return event
