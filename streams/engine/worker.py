"""The worker's agents: decode, detect, publish. No detection logic here."""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import time
from collections import deque
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP
from prometheus_client import generate_latest
from redis.exceptions import RedisError

from detectors.events import DnsEvent, EventError
from detectors.pipeline import Pipeline
from detectors.verdicts import Verdict
from streams.engine.alerts import alert_id, ecs_alert, ocsf_alert
from streams.engine.app import WorkerMetrics, build_pipeline, create_app, topic_config
from streams.errors import ConfigError
from streams.ingest.decode import decode_event
from streams.policy.store import encode, write_verdicts
from streams.settings import WorkerSettings

log = logging.getLogger("dnsguard.worker")
MAX_PENDING_VERDICTS = 100_000
COUNT_WINDOW_S = 60  # per-client counts: one-minute windows, kept for an hour
COUNT_KEEP_S = 3600


class Worker:
    """Owns the Faust app, the detector pipeline, Redis, and the agent wiring."""

    def __init__(self, settings: WorkerSettings, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.topics = topic_config(self.app, settings)
        self.pipeline = pipeline or build_pipeline(settings)
        self.metrics = WorkerMetrics.create()
        # Per-client event counts per minute: changelog-backed, they move with
        # partitions; served by GET /clients/counts?client=...&minutes=N.
        self.client_counts = self.app.Table(
            "client-counts", default=int, partitions=None, key_type=str, value_type=int
        ).tumbling(COUNT_WINDOW_S, expires=COUNT_KEEP_S)
        # Per-client query-rate baselines (the rate detector's state), so that a
        # restarted worker, or one taking over a partition, does not start cold.
        self.baselines = self.app.Table("rate-baselines", partitions=None, key_type=str)
        self.redis = settings.redis_auth.client(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self.pending: deque[Verdict] = deque(maxlen=MAX_PENDING_VERDICTS)
        self.app.batch_topic(self.topics["events"], self.handle)
        registry = self.metrics.registry

        @self.app.page("/metrics")
        async def metrics_page(view: Any, request: Any) -> Any:
            return view.bytes(generate_latest(registry), content_type="text/plain")

        # A client's counts live on the worker that owns its events partition
        # (the tables are co-partitioned with the events topic, whose Kafka key is
        # the client identity); Faust's router forwards the request there. Routed
        # by the events topic, not the table: the table's changelog encodes keys
        # as JSON, so its router would hash '"ns/pod"' and pick another partition.
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

    def recent_counts(self, client: str, minutes: int, now: float) -> list[dict[str, Any]]:
        """The client's events per window over the last ``minutes`` windows, newest first."""
        table = self.client_counts.table
        assert table.window is not None  # a windowed table
        out = []
        for i in range(minutes):
            window = table.window.current(now - i * COUNT_WINDOW_S)
            out.append({"start": window[0], "events": int(table[(client, window)])})
        return out

    # -- the events topic -----------------------------------------------------------
    async def handle(self, records: list[ConsumerRecord]) -> None:
        """One fetch of the events topic: decode, count, detect, publish."""
        events: list[DnsEvent] = []
        per_client: dict[str, tuple[int, ConsumerRecord]] = {}
        for record in records:
            try:
                ev = decode_event(record.value)
            except (EventError, ValueError, TypeError) as exc:
                await self.dead_letter(record, exc)
                continue
            events.append(ev)
            n, _ = per_client.get(ev.client, (0, record))
            per_client[ev.client] = (n + 1, record)
        # One changelog write per client and batch, not per event.
        rate = self.pipeline.rate
        for client, (n, record) in per_client.items():
            event = self.app.as_event(record)
            self.client_counts[client].apply(operator.add, n, event=event)
            saved = None if rate.clients.peek(client) else self.baselines.get(client)
            if saved is not None and rate.restore(client, saved):
                self.metrics.baselines_restored.inc()
        events.sort(key=lambda e: e.ts)
        self.observe_lag(records)
        await self.publish(events)
        for client, (_, record) in per_client.items():
            baseline = rate.snapshot(client)
            if baseline is not None:
                event = self.app.as_event(record)  # held: Faust keeps only a weak reference
                self.baselines[client] = baseline

    def render_alert(self, d: Any, incident: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.settings.alert_format == "ecs":
            return ecs_alert(d, incident)
        return ocsf_alert(d, incident)

    def observe_lag(self, batch: list[ConsumerRecord]) -> None:
        """Consumer lag: records between the newest offset seen and each partition's end."""
        newest: dict[tuple[str, int], int] = {}
        for r in batch:  # a fetch lists each partition's records in offset order
            newest[r.topic, r.partition] = r.offset
        for (topic, partition), offset in newest.items():
            tp = TP(topic, partition)
            try:
                highwater = self.app.consumer.highwater(tp)
            except (KeyError, AttributeError):  # not known yet for this partition
                continue
            if highwater is not None:
                self.metrics.lag.labels(partition=str(tp.partition)).set(
                    max(0, highwater - offset - 1)
                )

    async def dead_letter(self, m: ConsumerRecord, exc: Exception) -> None:
        body = {
            "topic": m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "error": f"{type(exc).__name__}: {exc}",
            "value": (m.value or b"")[:8192].decode("utf-8", "replace")
            if isinstance(m.value, bytes)
            else str(m.value)[:8192],
        }
        await self.topics["dlq"].send(key=m.key, value=json.dumps(body).encode())
        self.metrics.dlq.inc()

    async def publish(self, events: list[DnsEvent]) -> None:
        result = self.pipeline.process(events)
        self.metrics.events.inc(len(events))
        for kind, n in result.names.items():
            self.metrics.names.labels(kind=kind).inc(n)
        now = time.time()
        for ev in events[-1:]:
            self.metrics.latency.observe(max(0.0, now - ev.ts))
        verdicts = []
        uids = [alert_id(a.decision, a.incident.incident) for a in result.alerts]
        fresh = await self.first_times(uids)
        for a, uid, first in zip(result.alerts, uids, fresh, strict=True):
            if first:
                alert = self.render_alert(a.decision, a.incident.incident)
                await self.topics["alerts"].send(key=uid.encode(), value=json.dumps(alert).encode())
        for d in result.decisions:
            self.metrics.findings.labels(detector=d.finding.detector).inc()
            if d.verdict is not None:
                verdicts.append(d.verdict)
                self.metrics.verdicts.labels(action=d.verdict.action).inc()
                await self.topics["verdicts"].send(
                    key=d.verdict.key.encode(), value=encode(d.verdict).encode()
                )
        self.pending.extend(verdicts)
        await self.flush_verdicts()

    async def first_times(self, uids: list[str]) -> list[bool]:
        """For each alert id, whether it was not published before (Redis SET NX on
        it), in one round trip for the whole batch.

        While Redis is unreachable alerts are published anyway: at least once.
        """
        if not uids:
            return []
        ttl = self.settings.alert_dedup_ttl_s
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid in uids:
                    pipe.set(f"dnsguard:alert:{uid}", b"1", nx=True, ex=ttl)
                return [bool(r) for r in await pipe.execute()]
        except (RedisError, OSError):
            return [True] * len(uids)

    async def flush_verdicts(self) -> None:
        """Write pending verdicts with bounded retries; keep them for the next batch if Redis is away."""
        if not self.pending:
            return
        batch = list(self.pending)
        delay = 0.05
        for attempt in range(self.settings.redis_retries):
            try:
                await write_verdicts(self.redis, batch)
            except (RedisError, OSError) as exc:
                if attempt == self.settings.redis_retries - 1:
                    log.warning("Redis unavailable, %d verdicts pending: %s", len(batch), exc)
                    self.metrics.pending_verdicts.set(len(self.pending))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                self.pending.clear()
                self.metrics.pending_verdicts.set(0)
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
    worker = Worker(settings)
    worker.app.finalize()
    # The model, the PSL and Faust's own objects live as long as the process:
    # keep them out of the collector's full passes (they cost ~50 ms each).
    gc.freeze()
    from faust.worker import Worker as FaustWorker

    FaustWorker(worker.app, loglevel="warning", quiet=True).execute_from_commandline()
