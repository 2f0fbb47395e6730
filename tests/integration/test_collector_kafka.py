"""The collector against real Kafka: acknowledged writes, DLQ, and 503 when Kafka is away."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from streams.engine.topics import TopicSpec, ensure_topics
from streams.ingest.batch import decode_batch_v2
from streams.ingest.collector import Collector
from streams.settings import CollectorSettings, Secret
from streams.stack.processes import free_ports
from tests.unit.test_collector import event

pytestmark = pytest.mark.integration


async def _drain(bootstrap: str, topic: str, n: int) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[tuple[bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while len(out) < n:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    out.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def test_events_and_dead_letters_land_in_kafka(kafka_bootstrap: str, unique_topic: str) -> None:
    settings = CollectorSettings(
        token=Secret("collector-token-0123"),
        kafka_bootstrap=kafka_bootstrap,
        events_topic=unique_topic,
        dlq_topic=unique_topic + ".dlq",
    )

    async def run() -> None:
        await ensure_topics(
            kafka_bootstrap, [TopicSpec(unique_topic, 3), TopicSpec(unique_topic + ".dlq", 1)]
        )
        body = json.dumps(
            [
                event("a.com", "p1"),
                event("b.com", "p2"),
                {"v": 1, "ts": "bad"},
                event("c.com", "p1"),
            ]
        ).encode()
        async with TestClient(TestServer(Collector(settings).app())) as client:
            resp = await client.post(
                "/v1/events", data=body, headers={"Authorization": "Bearer collector-token-0123"}
            )
            assert resp.status == 202
            metrics = await (await client.get("/metrics")).text()
        # 202 means acknowledged: both are already readable
        # one batch record per client: a v2 batch of its events, in order
        records = dict(await _drain(kafka_bootstrap, unique_topic, 2))
        assert sorted(records) == [b"shop/p1", b"shop/p2"]
        names = {k: [e.name for e in decode_batch_v2(v).events] for k, v in records.items()}
        assert names == {b"shop/p1": ["a.com", "c.com"], b"shop/p2": ["b.com"]}
        dead = await _drain(kafka_bootstrap, unique_topic + ".dlq", 1)
        assert "ts" in json.loads(dead[0][1])["reason"]
        assert 'dnsguard_collector_events_total{outcome="accepted"} 3.0' in metrics

    asyncio.run(run())


def test_kafka_unreachable_is_503_and_recovers_nothing_lost(kafka_bootstrap: str) -> None:
    (dead_port,) = free_ports(1)
    settings = replace(
        CollectorSettings(token=Secret(""), insecure=True),
        kafka_bootstrap=f"127.0.0.1:{dead_port}",
        produce_timeout_s=2.0,
    )

    async def run() -> int:
        async with TestClient(TestServer(Collector(settings).app())) as client:
            resp = await client.post("/v1/events", data=json.dumps([event()]).encode())
            assert resp.headers.get("Retry-After") == "1"
            return resp.status

    assert asyncio.run(run()) == 503
