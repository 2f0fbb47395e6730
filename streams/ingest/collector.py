"""The collector: HTTP ingest of event batches from the Envoy filters into Kafka.

``POST /v1/events`` takes a v2 batch (a JSON object: one capture point's
identity once, its events as arrays; ``streams.ingest.batch``), which the
filters send, or a JSON array of v1 events (earlier filters, tools). The
request is checked (bearer token, body size, events per batch), decoded by
typed msgspec decoders and validated (a valid DNS name, Kubernetes names, an
IP address); the valid events go to ``dnsguard.events`` (idempotent producer,
acks=all), invalid ones to the dead-letter topic, each with its reason. The
events of one request whose client keys Kafka's partitioner puts on one
partition of the events topic travel as one **v2 batch record**, keyed by the
first of those keys, so it lands on that partition (at most
``RECORD_MAX_EVENTS`` events and about ``RECORD_MAX_BYTES`` per record, so a
record stays under Kafka's default 1 MiB message limit); v1 input is
converted, so the worker reads one format. The worker pays Kafka's and
Faust's per-message cost once per batch record, not once per event or per
client: a node's request naming hundreds of pods is a few records. Records
of many requests bound for one partition wait up to ``bundle_ms`` for each
other and travel as one **bundle** (``streams.ingest.bundles``): sidecars'
requests of a few events each become one record per partition. The reply
is 202 only after Kafka acknowledged every record carrying the request;
503 with Retry-After when Kafka is unavailable; 4xx with a reason for a
request that cannot be read as a batch (the filter does not retry those).
Nothing in a request can crash the service or cost the other events of its
batch: an event that does not decode (or is nested too deeply for the fast
decoder) is cut out of the batch and dead-lettered alone.

Authentication is required unless ``DNSGUARD_INSECURE=true``. A request
carries either the collector token (events of any namespace) or a
namespace's own token (``DNSGUARD_COLLECTOR_NAMESPACE_TOKENS_DIR``), whose
events must all say that namespace: a sidecar holding its namespace's token
cannot speak for another namespace, so it cannot get a name blocked there.

``sink = "jsonl:PATH"`` writes the same records to a file instead of Kafka,
one v2 batch per line (``dnsguard replay`` reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from detectors.events import EventError, check_identity
from streams.engine.web import serve_app
from streams.ingest import batch as v2
from streams.ingest.bundles import Bundler, Part, Record
from streams.ingest.events import Event, NotAnArray, decode_batch, decode_event
from streams.settings import CollectorSettings

log = logging.getLogger("dnsguard.collector")
ANY_NAMESPACE = None
RECORD_MAX_EVENTS = 1000
RECORD_MAX_BYTES = 512 * 1024


@functools.lru_cache(maxsize=1 << 16)
def partition_of(key: str, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner (the
    producer's, and Faust's for the worker's tables) gives the client key."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), None))


def batch_parts(batches: Sequence[v2.Batch], partitions: int) -> list[Part]:
    """Batches as records for a topic of ``partitions`` partitions, each within
    ``RECORD_MAX_EVENTS`` events and about ``RECORD_MAX_BYTES``, events in the
    order given.

    One v2 batch carries every client of a batch that the partitioner puts on
    one partition, keyed by the first of them (so the record lands on that
    partition): each client's events stay on its partition, as its state in
    the worker's tables does, and a request from a node's hundreds of pods
    is a few records, not hundreds (the worker pays Faust's cost per record)."""
    group = functools.partial(partition_of, partitions=partitions)
    return [
        Part(group(key), partitions, key.encode(), chunk, n)
        for batch in batches
        for key, part in v2.split_by(batch, group)
        for n, chunk in v2.chunks(part, RECORD_MAX_EVENTS, RECORD_MAX_BYTES)
    ]


def batch_records(batches: Sequence[v2.Batch], partitions: int | None = None) -> list[Record]:
    """Batches as records of the events topic, one request's as the collector
    hands them to the bundler (:func:`batch_parts`); without ``partitions``
    (a file), one record per client key."""
    if partitions is not None:
        return [(p.key, p.value) for p in batch_parts(batches, partitions)]
    return [
        (key.encode(), chunk)
        for batch in batches
        for key, part in v2.split_by_client(batch)
        for _, chunk in v2.chunks(part, RECORD_MAX_EVENTS, RECORD_MAX_BYTES)
    ]


def records_from_v1(
    events: Sequence[bytes], partitions: int | None = None
) -> tuple[list[Record], list[Record]]:
    """v1 events (JSON bytes) as records of the events topic (of ``partitions``
    partitions), and dead letters for those that are not valid: what the
    collector writes for a v1 request."""
    dead: list[Record] = []
    return batch_records(Collector.accept_v1(events, ANY_NAMESPACE, dead), partitions), dead


class SinkUnavailable(Exception):
    """The sink could not take the records now; the client should retry."""


class Sink(Protocol):
    """Takes records of the events topic (``(client key, v2 batch)``) and dead letters."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def partitions(self) -> int | None:
        """The events topic's partition count (None: records are not partitioned)."""
        ...

    async def send(self, events: Sequence[Record], dead: Sequence[Record]) -> None: ...


class KafkaSink:
    """Idempotent producer, acks=all. Connects lazily and reconnects on demand,
    so the collector starts (and answers 503) while Kafka is down."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._connect = asyncio.Lock()
        # records are handed to the producer in the order send is called (a
        # lock is first come, first served), so a partition's records keep it
        self._order = asyncio.Lock()

    async def start(self) -> None:
        # If Kafka is away the first request retries; until then the collector answers 503.
        with contextlib.suppress(SinkUnavailable):
            await self._ensure()

    async def _ensure(self) -> Any:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async with self._connect:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=self.settings.linger_ms,
                max_batch_size=512 * 1024,
                request_timeout_ms=int(self.settings.produce_timeout_s * 1000),
                **self.settings.kafka_security.aiokafka_kwargs(),
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                raise SinkUnavailable(
                    f"Kafka at {self.settings.kafka_bootstrap} unreachable: {exc}"
                ) from exc
            self._producer = producer
            return producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def partitions(self) -> int | None:
        from aiokafka.errors import KafkaError

        producer = await self._ensure()
        try:
            async with asyncio.timeout(self.settings.produce_timeout_s):
                return len(await producer.partitions_for(self.settings.events_topic))
        except (KafkaError, TimeoutError) as exc:
            raise SinkUnavailable(f"no partitions of {self.settings.events_topic}: {exc}") from exc

    async def send(self, records: Sequence[Record], dead: Sequence[Record]) -> None:
        from aiokafka.errors import KafkaError

        producer = await self._ensure()
        s = self.settings
        try:
            async with self._order:
                futures = [await producer.send(s.events_topic, v, key=k) for k, v in records]
                futures += [await producer.send(s.dlq_topic, v, key=k) for k, v in dead]
            async with asyncio.timeout(s.produce_timeout_s):
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise SinkUnavailable(
                f"Kafka did not acknowledge: {type(exc).__name__}: {exc}"
            ) from exc


class JsonlSink:
    """Records to ``PATH``, one v2 batch per line, dead letters to ``PATH.dlq``
    (for the embedded mode and debugging)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    async def partitions(self) -> int | None:
        return None  # a file has no partitions: one record per client key

    async def send(self, records: Sequence[Record], dead: Sequence[Record]) -> None:
        async with self._lock:
            try:
                with self.path.open("ab") as fh:
                    fh.writelines(v + b"\n" for _, v in records)
                if dead:
                    with self.path.with_name(self.path.name + ".dlq").open("ab") as fh:
                        fh.writelines(v + b"\n" for _, v in dead)
            except OSError as exc:
                raise SinkUnavailable(f"cannot write {self.path}: {exc}") from exc


def make_sink(settings: CollectorSettings) -> Sink:
    if settings.sink.startswith("jsonl:"):
        return JsonlSink(Path(settings.sink.removeprefix("jsonl:")))
    return KafkaSink(settings)


@dataclass
class Metrics:
    registry: CollectorRegistry
    batches: Counter
    events: Counter
    produce_seconds: Histogram
    record_events: Histogram
    insecure: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            batches=Counter(
                "dnsguard_collector_batches",
                "Batches received, by outcome",
                ["outcome"],
                registry=r,
            ),
            events=Counter(
                "dnsguard_collector_events", "Events received, by outcome", ["outcome"], registry=r
            ),
            produce_seconds=Histogram(
                "dnsguard_collector_produce_seconds",
                "Time until the sink acknowledged a batch",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=r,
            ),
            record_events=Histogram(
                "dnsguard_collector_record_events",
                "Events per record written to the events topic (a bundle of requests' batches)",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
                registry=r,
            ),
            insecure=Gauge(
                "dnsguard_insecure_mode",
                "1 when the service runs without authentication (DNSGUARD_INSECURE=true)",
                registry=r,
            ),
        )


def _dead_letter(raw: bytes, reason: str) -> Record:
    body = {
        "reason": reason,
        "received": time.time(),
        "event": raw[:8192].decode("utf-8", "replace"),
        "truncated": len(raw) > 8192,
    }
    return b"", json.dumps(body).encode()


def _foreign(namespace: str, only_namespace: str | None) -> str:
    return (
        f"node.namespace {namespace!r}: this token may only send "
        f"events of namespace {only_namespace!r}"
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Collector:
    def __init__(self, settings: CollectorSettings, sink: Sink | None = None) -> None:
        self.settings = settings
        self.sink = sink or make_sink(settings)
        self.metrics = Metrics.create()
        self.bundler = (
            Bundler(self.sink.send, settings.bundle_ms / 1000, RECORD_MAX_EVENTS,
                    RECORD_MAX_BYTES, self.metrics.record_events.observe)
            if settings.bundle_ms > 0
            else None
        )  # fmt: skip
        self._any = _digest(settings.token.reveal()) if settings.token else None
        # namespace tokens by their digest: a lookup reveals nothing about a token
        self._namespaces = {_digest(t.reveal()): ns for ns, t in settings.namespace_tokens}
        if settings.insecure:
            self.metrics.insecure.set(1)
            log.warning(
                "DNSGUARD_INSECURE=true: the collector accepts events without a token, "
                "from anyone who can reach it"
            )

    def _reject(self, status: int, reason: str, **headers: str) -> web.Response:
        self.metrics.batches.labels(outcome=f"rejected_{status}").inc()
        return web.json_response({"error": reason}, status=status, headers=headers)

    def authorize(self, header: str) -> tuple[bool, str | None]:
        """(allowed, the one namespace its events may carry or ANY_NAMESPACE)."""
        scheme, _, token = header.partition(" ")
        if scheme == "Bearer" and token:
            digest = _digest(token)
            if self._any is not None and hmac.compare_digest(digest, self._any):
                return True, ANY_NAMESPACE
            namespace = self._namespaces.get(digest)
            if namespace is not None:
                return True, namespace
        return self.settings.insecure, ANY_NAMESPACE

    async def ingest(self, request: web.Request) -> web.Response:
        s = self.settings
        allowed, only_namespace = self.authorize(request.headers.get("Authorization", ""))
        if not allowed:
            return self._reject(
                401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
            )
        if request.content_length is not None and request.content_length > s.max_body_bytes:
            return self._reject(413, f"body over {s.max_body_bytes} bytes")
        try:
            body = await request.read()  # bounded by client_max_size
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, f"body over {s.max_body_bytes} bytes")
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            return self._reject(400, f"could not read the body: {exc}")
        if len(body) > s.max_body_bytes:
            return self._reject(413, f"body over {s.max_body_bytes} bytes")
        if body.lstrip()[:1] == b"{":
            try:
                batch, bad = v2.read_batch(body)
            except EventError as exc:
                return self._reject(400, f"not a v2 batch: {exc}")
            if len(batch.events) + len(bad) > s.max_events:
                return self._reject(413, f"more than {s.max_events} events in one batch")
            dead = [_dead_letter(raw, reason) for raw, reason in bad]
            batches = self.accept_v2(batch, only_namespace, dead)
        else:
            try:
                items = decode_batch(body)
            except NotAnArray as exc:
                return self._reject(400, str(exc))
            if len(items) > s.max_events:
                return self._reject(413, f"more than {s.max_events} events in one batch")
            dead = []
            batches = self.accept_v1(items, only_namespace, dead)
        accepted = sum(len(b.events) for b in batches)
        t0 = time.perf_counter()
        try:
            await self._write(batches, dead)
        except SinkUnavailable as exc:
            self.metrics.batches.labels(outcome="unavailable").inc()
            return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "1"})
        self.metrics.produce_seconds.observe(time.perf_counter() - t0)
        self.metrics.batches.labels(outcome="accepted").inc()
        self.metrics.events.labels(outcome="accepted").inc(accepted)
        self.metrics.events.labels(outcome="rejected").inc(len(dead))
        return web.json_response({"accepted": accepted, "rejected": len(dead)}, status=202)

    async def _write(self, batches: list[v2.Batch], dead: list[Record]) -> None:
        """A request's records and dead letters, acknowledged; its records
        bundled with other requests' (``bundle_ms``) when the topic has
        partitions."""
        partitions = await self.sink.partitions()
        if partitions is None:  # a file: one record per client key
            await self.sink.send(batch_records(batches), dead)
            return
        parts = batch_parts(batches, partitions)
        if self.bundler is None:
            await self.sink.send([(p.key, p.value) for p in parts], dead)
            for p in parts:
                self.metrics.record_events.observe(p.events)
            return
        writes = [self.bundler.send(parts)]
        if dead:
            writes.append(self.sink.send([], dead))
        await asyncio.gather(*writes)

    @staticmethod
    def accept_v1(
        items: Sequence[bytes], only_namespace: str | None, dead: list[Record]
    ) -> list[v2.Batch]:
        """The valid v1 events as v2 batches (one per node); the others to ``dead``."""
        by_node: dict[bytes, list[Event]] = {}
        for data in items:
            try:
                ev = decode_event(data)
            except EventError as exc:
                dead.append(_dead_letter(data, str(exc)))
                continue
            if only_namespace is not ANY_NAMESPACE and ev.node.namespace != only_namespace:
                dead.append(_dead_letter(data, _foreign(ev.node.namespace, only_namespace)))
                continue
            by_node.setdefault(v2.encoder.encode(ev.node), []).append(ev)
        return [v2.from_v1(events) for events in by_node.values()]

    @staticmethod
    def accept_v2(
        batch: v2.Batch, only_namespace: str | None, dead: list[Record]
    ) -> list[v2.Batch]:
        """The batch's valid events (as a batch); the others to ``dead``, each as
        a batch of its own with its client, so a dead letter can be replayed."""
        node = batch.node
        foreign = None
        if only_namespace is not ANY_NAMESPACE and node.namespace != only_namespace:
            foreign = _foreign(node.namespace, only_namespace)
        bad_client: dict[int, str] = {}
        for i, c in enumerate(batch.clients):
            try:
                check_identity(node.namespace, node.pod, node.workload, c.ip)
            except EventError as exc:
                bad_client[i] = str(exc)
        good: list[v2.Event] = []
        for ev in batch.events:
            try:
                if foreign is not None:
                    raise EventError(foreign)
                batch.check_event(ev)
                if ev.client in bad_client:
                    raise EventError(bad_client[ev.client])
            except EventError as exc:
                dead.append(_dead_letter(v2.encoder.encode(v2.single(batch, ev)), str(exc)))
                continue
            good.append(ev)
        return [v2.Batch(node, batch.clients, good)] if good else []

    async def metrics_view(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post(self.settings.path, self.ingest)
        app.router.add_get("/metrics", self.metrics_view)
        app.router.add_get("/healthz", self.health)

        async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
            await self.sink.start()
            yield
            if self.bundler is not None:
                await self.bundler.close()
            await self.sink.stop()

        app.cleanup_ctx.append(lifecycle)
        return app


async def serve(settings: CollectorSettings, ready: asyncio.Event | None = None) -> None:
    """Run the collector until cancelled."""
    await serve_app(Collector(settings).app(), settings.host, settings.port, ready)
