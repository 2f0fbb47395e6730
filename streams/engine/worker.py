"""The worker's agent: decode, detect, publish. No detection logic here.

One Faust agent reads the events topic through Faust's public API only: a
task iterates ``stream.noack().events()`` into a bounded ``Intake``
(``streams.engine.intake`` says why not ``take_events``), and the agent takes
up to ``batch_max`` records, or what arrived by ``BATCH_WAIT_S`` after the
oldest of them, as one batch and acks each record (Faust commits it later) only once the state it
changed is saved (below). A record is a batch record (a v2 batch of the
events of one request's clients on that partition, or a bundle of such
batches from the requests the collector received within its bundle window),
a JSON array of v1 events or a single v1 event, so Faust's per-message cost
is paid per batch record, and the detectors see many clients' events in one
call.

The per-client tables are keyed by the client identity as raw bytes, the same
bytes as the events topic's record key, and written through the producer's
partitioner (``use_partitioner``): a client's table entries land in the
changelog partition of its own events partition, whichever records share a
batch, so they are restored on the worker that takes that partition over.

Detector state survives a restart or a rebalance. Every client touched since
the last save has its detector state (``Pipeline.dump_client``: windows, DGA
evidence, rate baseline, open incidents) written to the ``client-state`` table
with a sequence number, and its new per-minute counts to ``client-activity``,
once every ``SAVE_EVERY_S`` (also when no record comes); only then are the
records handled since acked, so Faust commits no offset past a record whose
effect on a client's state is not in the table. A client in many batches of
that second is written once, not once a batch: with hundreds of clients a
batch, the writes were most of a batch's cost. Before a batch, a client whose
table entry has another sequence number than the one this process last wrote
(a restart, a partition taken over, or one given back after another worker
moved it on) is loaded from the table first. Replayed records after a kill
(at most the last second's and the commit interval's) fold into restored
state at least once; alert ids are stable per incident update, so a replay
publishes no alert twice.

The client-level detector holds each client's last seconds of events to take
them in time order (``detectors.infected``; they are in the snapshot too).
Newer events move them on; when the topic goes quiet, a timer moves them on
with the worker's clock (``CLOCK_S``), so a burst followed by silence is
still judged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from operator import attrgetter
from typing import Any, cast

import faust
from faust.types import TP, EventT, StreamT
from prometheus_client import generate_latest

from detectors.events import DnsEvent
from detectors.newdomain import NewlyObservedDomain
from detectors.pipeline import Pipeline
from detectors.verdicts import Verdict
from detectors.window import BoundedStates
from streams.engine.app import WorkerMetrics, build_pipeline, create_app, topic_config
from streams.engine.intake import Intake, IntakeClosed
from streams.engine.step import AlertFormat, StepOutput, step
from streams.engine.topics import TopicSpec, ensure_topics, wait_for_leaders
from streams.errors import ConfigError
from streams.ingest.decode import decode_record
from streams.policy.store import StoreUnavailable, claim_once, encode, write_verdicts
from streams.settings import WorkerSettings

log = logging.getLogger("dnsguard.worker")
MAX_PENDING_VERDICTS = 100_000
COUNT_WINDOW_S = 60  # per-client counts: one-minute windows, kept for an hour
COUNT_KEEP_S = 3600
# a batch: what arrived by BATCH_WAIT_S after its oldest record, or batch_max
# records, or BATCH_BYTES of records (a batch's CPU stays in tens of ms)
BATCH_WAIT_S = 0.01
BATCH_BYTES = 1 << 20
INTAKE_RECORDS = 10_000  # records read ahead of the batch loop, at most
INTAKE_BYTES = 64 << 20  # and their bytes
SAVE_EVERY_S = 1.0  # while the input has not caught up, touched clients are saved this often
MAX_UNSAVED = 20_000  # and at the latest after this many records
CLOCK_S = 1.0  # how often a quiet input's held events are moved on by the clock
RETRY_S = 2.0  # how often verdicts pending for Redis are tried again between batches
SWEEP_S = 60.0  # how often clients silent for COUNT_KEEP_S are dropped from the tables
MAX_TRACKED_CLIENTS = 100_000
COUNTS_TABLE = "client-activity"
_CLIENT = attrgetter("client")
STATE_TABLE = "client-state"


def changelog_topics(settings: WorkerSettings) -> list[TopicSpec]:
    """The per-client tables' changelog topics, as Faust names them, compacted
    and co-partitioned with the events topic."""
    return [
        TopicSpec(
            f"{settings.app_id}-{table}-changelog",
            settings.table_partitions,
            {"cleanup.policy": "compact"},
        )
        for table in (COUNTS_TABLE, STATE_TABLE)
    ]


def add_count(minutes: list[list[int]] | None, start: int, n: int) -> list[list[int]]:
    """A client's ``[[minute start, events], ...]`` (oldest first) with ``n``
    more events in the minute starting at ``start``; minutes older than
    ``COUNT_KEEP_S`` are dropped, so a client's entry stays bounded."""
    kept = [list(m) for m in minutes or () if m[0] > start - COUNT_KEEP_S]
    for m in kept:
        if m[0] == start:
            m[1] += n
            return kept
    return sorted([*kept, [start, n]])


class Worker:
    """Owns the Faust app, the detector pipeline, Redis, and the agent wiring."""

    def __init__(self, settings: WorkerSettings, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.topics = topic_config(self.app, settings)
        self.pipeline = pipeline or build_pipeline(settings)
        self.metrics = WorkerMetrics.create()
        # Per-client event counts per minute, for the last hour: changelog-backed,
        # they move with partitions; served by GET /clients/counts?client=...&minutes=N.
        self.client_counts = self.client_table(COUNTS_TABLE)
        # Per-client detector state, [sequence, snapshot]: a restarted worker, or
        # one taking over a partition, carries on where the last one stopped.
        self.client_state = self.client_table(STATE_TABLE)
        # the sequence number this process last wrote, per client (bounded like
        # the detectors' own per-client state)
        self.written: BoundedStates[str, int] = BoundedStates(MAX_TRACKED_CLIENTS, int)
        # clients touched since their last save: their new counts per minute
        self.unsaved: dict[str, dict[int, int]] = {}
        self.redis = settings.redis_auth.client(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self.pending: deque[Verdict] = deque(maxlen=MAX_PENDING_VERDICTS)
        self.flushing = asyncio.Lock()
        registry = self.metrics.registry

        @self.app.agent(self.topics["events"], name="dnsguard-events")
        async def events(stream: StreamT[bytes]) -> None:
            # Acks are ours: an event is acked once its batch is handled.
            # (noack is Stream's public API; StreamT does not declare it.)
            manual = cast(faust.Stream[bytes], stream).noack()
            intake: Intake[EventT[bytes]] = Intake(
                INTAKE_RECORDS, INTAKE_BYTES, lambda e: len(e.message.value or b"")
            )
            reader = asyncio.ensure_future(intake.fill(manual.events()))
            # records handled but not acked yet: their clients' state is not saved yet
            handled: list[EventT[bytes]] = []
            saved_at = time.monotonic()
            try:
                while True:
                    # Touched clients are saved, then their records acked (see the
                    # module doc), SAVE_EVERY_S apart: also when no record comes.
                    wait = max(0.0, saved_at + SAVE_EVERY_S - time.monotonic())
                    try:
                        async with asyncio.timeout(wait if handled else None):
                            batch = await intake.take(settings.batch_max, BATCH_BYTES, BATCH_WAIT_S)
                    except TimeoutError:
                        batch = []
                    except IntakeClosed as closed:
                        if isinstance(closed.__cause__, EOFError):
                            return  # the stream ended: Faust is stopping the agent
                        raise
                    t0 = time.perf_counter()
                    if batch:
                        await self.handle([e.message for e in batch])
                        handled += batch
                    now = time.monotonic()
                    if now - saved_at >= SAVE_EVERY_S or len(handled) >= MAX_UNSAVED:
                        self.save_touched()
                        for event in handled:
                            await manual.ack(event)
                        handled.clear()
                        saved_at = now
                    if not batch:
                        continue
                    self.metrics.batch_records.observe(len(batch))
                    self.metrics.intake_records.set(len(intake))
                    self.metrics.batch_seconds.observe(time.perf_counter() - t0)
                    await asyncio.sleep(0)  # Faust's delivery runs before the next batch
            finally:
                reader.cancel()

        @self.app.timer(SWEEP_S)  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
        async def sweep() -> None:
            self.sweep(time.time())

        # Events the client-level detector holds for time order move on with
        # the clock when the input goes quiet (a burst, then silence).
        @self.app.timer(CLOCK_S)  # type: ignore[untyped-decorator]
        async def clock() -> None:
            if self.pipeline.infected.holding:
                await self.publish([], clock=time.time())

        # Verdicts held while Redis was away reach it when it is back, whether
        # or not events are still arriving.
        @self.app.timer(RETRY_S)  # type: ignore[untyped-decorator]
        async def retry_verdicts() -> None:
            if self.pending:
                await self.flush_verdicts()

        @self.app.page("/metrics")
        async def metrics_page(view: Any, request: Any) -> Any:
            return view.bytes(generate_latest(registry), content_type="text/plain")

        # A client's counts live on the worker that owns its events partition
        # (the tables are co-partitioned with the events topic, whose Kafka key is
        # the client identity); Faust's router forwards the request there.
        @self.app.topic_route(topic=self.topics["events"], query_param="client")
        async def routed_counts(view: Any, request: Any) -> Any:
            minutes = int(request.query.get("minutes", "5"))
            counts = self.recent_counts(request.query["client"], minutes, time.time())
            return view.json({"client": request.query["client"], "window_s": COUNT_WINDOW_S,
                              "minutes": counts})  # fmt: skip

        @self.app.page("/clients/counts")
        async def counts_page(view: Any, request: Any) -> Any:
            minutes = request.query.get("minutes", "5")
            if not request.query.get("client"):
                return view.json({"error": "client: required"}, status=400)
            most = COUNT_KEEP_S // COUNT_WINDOW_S
            if not minutes.isdigit() or not 1 <= int(minutes) <= most:
                return view.json({"error": f"minutes: 1 to {most}"}, status=400)
            return await routed_counts(view, request)

    def client_table(self, name: str) -> Any:
        """A changelog-backed table keyed by client identity (raw bytes, as the
        events topic's key), written through the producer's partitioner."""
        # key_type bytes: Faust serialises the keys raw
        return self.app.Table(name, partitions=None, key_type=bytes, use_partitioner=True)

    def recent_counts(self, client: str, minutes: int, now: float) -> list[dict[str, Any]]:
        """The client's events per minute over the last ``minutes`` minutes, newest first."""
        seen = {int(s): int(n) for s, n in self.client_counts.get(client.encode()) or ()}
        newest = int(now) // COUNT_WINDOW_S * COUNT_WINDOW_S
        starts = [newest - i * COUNT_WINDOW_S for i in range(minutes)]
        return [{"start": float(s), "events": seen.get(s, 0)} for s in starts]

    def sweep(self, now: float) -> None:
        """Drops the clients silent for ``COUNT_KEEP_S`` from both tables (a
        tombstone in each changelog): the tables hold the last hour's clients."""
        cutoff = now - COUNT_KEEP_S
        for key, minutes in list(self.client_counts.items()):
            if not minutes or minutes[-1][0] + COUNT_WINDOW_S <= cutoff:
                del self.client_counts[key]
                if key in self.client_state:
                    del self.client_state[key]

    # -- the events topic -----------------------------------------------------------
    async def handle(self, records: list[Any]) -> None:
        """One batch of records of the events topic: decode, count, detect, publish."""
        events: list[DnsEvent] = []
        seen_at: dict[str, float] = {}  # per client: the newest record's timestamp
        per_client: dict[str, int] = {}
        for message in records:
            decoded, rejected = decode_record(message.value or b"")
            for bad in rejected:
                await self.dead_letter(message, bad.raw, bad.error)
            at = message.timestamp or 0.0
            # counted per record and client, not per event
            for client, n in Counter(map(_CLIENT, decoded)).items():
                per_client[client] = per_client.get(client, 0) + n
                seen_at[client] = max(seen_at.get(client, 0.0), at)
            events += decoded
        for client, n in per_client.items():
            start = int(seen_at[client] or time.time()) // COUNT_WINDOW_S * COUNT_WINDOW_S
            counts = self.unsaved.setdefault(client, {})
            counts[start] = counts.get(start, 0) + n
            self.take_up(client, client.encode())
        if records:
            last = records[-1]
            self.observe_lag(last.topic, last.partition, last.offset)
        if events:
            await self.publish(events)
        elif self.pending:
            await self.flush_verdicts()

    def save_touched(self) -> None:
        """Every client touched since the last save: its counts and its
        detector state, one changelog write each per table."""
        for client, counts in self.unsaved.items():
            key = client.encode()
            minutes = self.client_counts.get(key)
            for start, n in counts.items():
                minutes = add_count(minutes, start, n)
            self.client_counts[key] = minutes
            self.save(client, key)
        self.unsaved.clear()

    def take_up(self, client: str, key: bytes) -> None:
        """Load the client's detector state from the table unless this process
        wrote the newest entry (see the module doc)."""
        saved = self.client_state.get(key)
        if not saved or saved[0] == self.written.peek(client):
            return
        seq, snapshot = saved
        self.written.put(client, int(seq))
        if snapshot is None:
            self.pipeline.forget_client(client)
            return
        try:
            self.pipeline.load_client(client, snapshot)
        except ValueError as exc:
            log.warning("client %r: state in the table refused, starting afresh: %s", client, exc)
            self.metrics.states_refused.inc()
        else:
            self.metrics.states_restored.inc()

    def save(self, client: str, key: bytes) -> None:
        """The client's detector state after a batch, as the table's newest entry."""
        seq = self.written.peek(client) or 0
        seq += 1
        self.written.put(client, seq)
        self.client_state[key] = [seq, self.pipeline.dump_client(client)]

    @property
    def alert_format(self) -> AlertFormat:
        return "ecs" if self.settings.alert_format == "ecs" else "ocsf"

    def observe_lag(self, topic: str, partition: int, offset: int) -> None:
        """Consumer lag: records between this one and the partition's end."""
        try:
            highwater = self.app.consumer.highwater(TP(topic, partition))
        except (KeyError, AttributeError):  # not known yet for this partition
            return
        if highwater is not None:
            self.metrics.lag.labels(partition=str(partition)).set(max(0, highwater - offset - 1))

    async def dead_letter(self, m: Any, raw: bytes, exc: Exception) -> None:
        """``raw`` (an event of record ``m``, or the whole record) to the DLQ with the error."""
        body = {
            "topic": m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "error": f"{type(exc).__name__}: {exc}",
            "value": raw[:8192].decode("utf-8", "replace"),
        }
        await self.topics["dlq"].send(key=m.key, value=json.dumps(body).encode())
        self.metrics.dlq.inc()

    async def publish(self, events: list[DnsEvent], clock: float | None = None) -> None:
        """The batch's step (``streams.engine.step``), then its outputs: alerts
        (each id once, via Redis), verdicts to Kafka and Redis, metrics.
        ``clock``: the time now, with no events (the quiet input's tick)."""
        out = step(self.pipeline, events, self.alert_format, clock=clock)
        self.metrics.events.inc(out.events)
        for kind, n in out.names.items():
            self.metrics.names.labels(kind=kind).inc(n)
        for detector, n in out.late.items():
            self.metrics.late.labels(detector=detector).inc(n)
        now = time.time()
        for ev in events[:1]:  # the batch's oldest event: the longest wait in it
            self.metrics.latency.observe(max(0.0, now - ev.ts))
        await self.claim_new_domains(out)
        fresh = await self.first_claims(
            [f"dnsguard:alert:{a.uid}" for a in out.alerts], self.settings.alert_dedup_ttl_s
        )
        for alert, first in zip(out.alerts, fresh, strict=True):
            if first:
                await self.topics["alerts"].send(
                    key=alert.uid.encode(), value=json.dumps(alert.body).encode()
                )
        for detector, n in out.findings.items():
            self.metrics.findings.labels(detector=detector).inc(n)
        for action, n in out.verdict_actions.items():
            self.metrics.verdicts.labels(action=action).inc(n)
        for v in out.verdicts:
            await self.topics["verdicts"].send(key=v.key.encode(), value=encode(v).encode())
        self.pending.extend(out.verdicts)
        await self.flush_verdicts()

    async def first_claims(self, keys: list[str], ttl_s: int) -> list[bool]:
        """For each key, whether this worker is the first to claim it within
        ``ttl_s`` (Redis SET NX), in one round trip for the whole batch: an
        alert id published once, a domain new to a namespace counted once.

        While Redis is unreachable every claim succeeds: at least once.
        """
        try:
            return await claim_once(self.redis, keys, ttl_s)
        except StoreUnavailable:
            return [True] * len(keys)

    async def claim_new_domains(self, out: StepOutput) -> None:
        """Newly observed domains, counted once per namespace across workers.

        A namespace's pods may sit on several workers, each of which knows only
        the names its own pods asked for, so its ``new_domain`` findings are
        candidates: the first worker to claim ``(namespace, domain)`` in Redis
        (for two of the detector's rotation periods, the span its filters
        remember) keeps the finding; the others drop it from their counts.
        """
        nod = [d for d in out.decisions if d.finding.detector == NewlyObservedDomain.name]
        if not nod:
            return
        ttl = int(2 * self.pipeline.settings.new_domain.rotate_s)
        keys = [f"dnsguard:new-domain:{d.finding.namespace}:{d.finding.name}" for d in nod]
        firsts = await self.first_claims(keys, ttl)
        lost = {id(d) for d, first in zip(nod, firsts, strict=True) if not first}
        if lost:
            out.findings[NewlyObservedDomain.name] -= len(lost)
            out.decisions = [d for d in out.decisions if id(d) not in lost]

    async def flush_verdicts(self) -> None:
        """Write pending verdicts with bounded retries; while Redis is away
        they stay pending, for the next batch or the next ``RETRY_S`` tick.

        One flush at a time (the batch loop and the timer both flush): the
        pending verdicts are taken out while they are written and put back
        in front of any newer ones if the write fails.
        """
        async with self.flushing:
            if not self.pending:
                return
            batch = list(self.pending)
            self.pending.clear()
            delay = 0.05
            for attempt in range(self.settings.redis_retries):
                try:
                    await write_verdicts(self.redis, batch)
                except StoreUnavailable as exc:
                    if attempt == self.settings.redis_retries - 1:
                        # back in front; past MAX_PENDING_VERDICTS the newest are dropped
                        self.pending.extendleft(reversed(batch))
                        log.warning("Redis unavailable, %d verdicts pending: %s", len(batch), exc)
                        self.metrics.pending_verdicts.set(len(self.pending))
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                else:
                    self.metrics.pending_verdicts.set(len(self.pending))
                    return


def run_worker(settings: WorkerSettings) -> None:
    import asyncio
    import gc
    from dataclasses import replace

    from streams.engine.topics import topic_partitions

    topics = [
        settings.events_topic,
        settings.alerts_topic,
        settings.verdicts_topic,
        settings.dlq_topic,
    ]
    layout = asyncio.run(
        topic_partitions(settings.kafka_bootstrap, topics, settings.kafka_security)
    )
    if layout is not None:  # Kafka answered (if it is away, Faust waits for it)
        missing = [t for t in topics if layout[t] is None]
        if missing:
            raise ConfigError(
                f"Kafka topics missing: {', '.join(missing)} (auto-creation is off; "
                "`dnsguard stack up` creates the default ones)"
            )
        # tables are co-partitioned with the events topic: take its partition count
        settings = replace(settings, table_partitions=layout[settings.events_topic] or 1)
        # The changelogs exist, with a leader for every partition, before Faust
        # starts: a table written while its new changelog has no leader yet
        # leaves Faust's producer without the topic's partitions (the agent
        # then crashes on the first write).
        changelogs = changelog_topics(settings)
        security = settings.kafka_security
        asyncio.run(ensure_topics(settings.kafka_bootstrap, changelogs, security))
        asyncio.run(wait_for_leaders(settings.kafka_bootstrap, changelogs, security))
    worker = Worker(settings)
    worker.app.finalize()
    # The model, the PSL and Faust's own objects live as long as the process:
    # keep them out of the collector's full passes (they cost ~50 ms each).
    gc.freeze()
    from faust.worker import Worker as FaustWorker

    faust_worker = FaustWorker(worker.app, loglevel=settings.log_level, quiet=True)
    # Faust's worker draws a progress spinner from log records: at a level of
    # warning or above it sets the root logger to DEBUG for the spinner's sake,
    # so every debug call of Faust, mode and aiokafka (one per message sent)
    # becomes a record. No spinner: the level stays the one configured.
    faust_worker.spinner = None
    faust_worker.execute_from_commandline()
