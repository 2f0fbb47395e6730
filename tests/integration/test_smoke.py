"""The local stack is real: Kafka round trip with aiokafka, Redis round trip."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.engine.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


async def _roundtrip(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    created = await ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    assert created == [topic]
    assert await ensure_topics(bootstrap, [TopicSpec(topic, 2)]) == []  # idempotent

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 3}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"g-{topic}"
    )
    await consumer.start()
    got: list[tuple[bytes | None, bytes | None]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 10:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return got


def test_kafka_produce_consume_roundtrip(kafka_bootstrap: str, unique_topic: str) -> None:
    got = asyncio.run(_roundtrip(kafka_bootstrap, unique_topic))
    assert sorted(v for _, v in got) == sorted(f"v{i}".encode() for i in range(10))
    # Same key, same partition: per-key order is preserved.
    for key in (b"k0", b"k1", b"k2"):
        values = [v for k, v in got if k == key]
        assert values == sorted(values, key=lambda b: int(b[1:]))


def test_kafka_does_not_auto_create_topics(kafka_bootstrap: str, unique_topic: str) -> None:
    async def run() -> list[str]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises(Exception):  # noqa: B017,PT011 - any error: the topic must not appear
                async with asyncio.timeout(8):
                    await producer.send_and_wait(unique_topic, b"x")
        finally:
            await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    assert unique_topic not in asyncio.run(run())


def test_redis_roundtrip(redis_url: str) -> None:
    async def run() -> tuple[bytes | None, int]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.set("dnsguard:test:key", b"value", ex=60)
            value = await client.get("dnsguard:test:key")
            ttl = await client.ttl("dnsguard:test:key")
            return value, ttl
        finally:
            await client.aclose()

    value, ttl = asyncio.run(run())
    assert value == b"value"
    assert 0 < ttl <= 60


def test_kafka_storage_format_accepts_a_cluster_id_starting_with_a_dash(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """About 1 in 64 generated ids begins with '-': formatting must not take it for a flag."""
    from dataclasses import replace

    from streams.settings import load_stack_settings
    from streams.stack import services as stack

    monkeypatch.setattr(stack, "_kafka_cluster_id", lambda: "-" + "A" * 21)
    kafka = stack.Kafka(replace(load_stack_settings({}), state_dir=tmp_path))
    kafka.home.mkdir(parents=True)
    kafka.prepare()  # runs kafka-storage format
    assert (
        "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (kafka.home / "data" / "meta.properties").read_text()
    )
