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


async def _read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of ``topic`` as (partition, key, value), read for 5 s."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[tuple[int, bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(5):
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                    out.extend((tp.partition, r.key, r.value) for r in records)
    except TimeoutError:
        pass
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


def test_a_nodes_clients_share_records_on_their_own_partitions(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """A node-local proxy's batch names 40 client IPs; on a 3-partition topic
    they travel as at most 3 records, each on the partition that Kafka's
    partitioner gives every one of its clients (where the worker keeps their
    state), with every event once."""
    from aiokafka.partitioner import murmur2

    from tests.unit.test_collector import v2_body

    settings = CollectorSettings(token=Secret("collector-token-0123"),
                                 kafka_bootstrap=kafka_bootstrap, events_topic=unique_topic,
                                 dlq_topic=unique_topic + ".dlq")  # fmt: skip
    ips = [f"10.0.0.{i + 1}" for i in range(40)]
    pairs = [(f"q{i}.example.com", ips[i % 40]) for i in range(120)]

    async def run() -> list[tuple[int, bytes]]:
        await ensure_topics(
            kafka_bootstrap, [TopicSpec(unique_topic, 3), TopicSpec(unique_topic + ".dlq", 1)]
        )
        async with TestClient(TestServer(Collector(settings).app())) as client:
            resp = await client.post("/v1/events", data=json.dumps(v2_body(*pairs)).encode(),
                                     headers={"Authorization": "Bearer collector-token-0123"})  # fmt: skip
            assert resp.status == 202
        return [(partition, value) for partition, _, value in await _read_all(kafka_bootstrap,
                                                                              unique_topic)]  # fmt: skip

    records = asyncio.run(run())
    assert 1 <= len(records) <= 3
    seen = []
    for partition, value in records:
        batch = decode_batch_v2(value)
        assert {(murmur2(c.ip.encode()) & 0x7FFFFFFF) % 3 for c in batch.clients} == {partition}
        seen += [(e.name, batch.clients[e.client].ip) for e in batch.events]
    assert sorted(seen) == sorted(pairs)


def test_sidecars_records_travel_in_bundles_on_their_partitions(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """Forty sidecars (a pod each) post at once: their records reach Kafka in
    bundles, far fewer than the requests, each on the partition of every
    client in it, every event once and each pod's in the order it sent them;
    each request was answered 202 only after its bundle was acknowledged."""
    from aiokafka.partitioner import murmur2

    from streams.ingest.decode import decode_record

    settings = CollectorSettings(token=Secret("collector-token-0123"), bundle_ms=200,
                                 kafka_bootstrap=kafka_bootstrap, events_topic=unique_topic,
                                 dlq_topic=unique_topic + ".dlq")  # fmt: skip
    pods = [f"web-{i}" for i in range(40)]
    bodies = [json.dumps([event(f"q{i}-{j}.example.com", pod) for j in range(3)]).encode()
              for i, pod in enumerate(pods)]  # fmt: skip

    async def run() -> list[tuple[int, bytes | None, bytes]]:
        await ensure_topics(
            kafka_bootstrap, [TopicSpec(unique_topic, 3), TopicSpec(unique_topic + ".dlq", 1)]
        )
        async with TestClient(TestServer(Collector(settings).app())) as client:
            auth = {"Authorization": "Bearer collector-token-0123"}
            replies = await asyncio.gather(
                *(client.post("/v1/events", data=b, headers=auth) for b in bodies)
            )
            assert [r.status for r in replies] == [202] * 40
        return await _read_all(kafka_bootstrap, unique_topic)

    records = asyncio.run(run())
    assert len(records) < 20
    seen: list[tuple[str, str]] = []
    for partition, key, value in records:
        assert key is not None
        assert (murmur2(key) & 0x7FFFFFFF) % 3 == partition
        events, rejected = decode_record(value)
        assert not rejected
        assert {(murmur2(e.client.encode()) & 0x7FFFFFFF) % 3 for e in events} == {partition}
        seen += [(e.client, e.qname) for e in events]
    assert sorted(seen) == sorted(
        (f"shop/{pod}", f"q{i}-{j}.example.com") for i, pod in enumerate(pods) for j in range(3)
    )
    for i, pod in enumerate(pods):
        assert [n for c, n in seen if c == f"shop/{pod}"] == [
            f"q{i}-{j}.example.com" for j in range(3)
        ]


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
