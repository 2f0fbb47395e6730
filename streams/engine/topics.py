"""Kafka topics dnsguard owns, and their explicit creation.

Brokers run with auto-creation off, so every topic is created here with its
partition count and config (the verdict topic is compacted: key ``scope|name``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streams.errors import StackError
from streams.settings import TOPICS

if TYPE_CHECKING:
    from streams.settings import KafkaSecurity


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def default_topics(events_partitions: int = 6) -> tuple[TopicSpec, ...]:
    week_ms = str(7 * 24 * 3600 * 1000)
    return (
        TopicSpec(TOPICS.events, events_partitions, {"retention.ms": week_ms}),
        TopicSpec(TOPICS.alerts, 3, {"retention.ms": week_ms}),
        TopicSpec(
            TOPICS.verdicts,
            3,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000"},
        ),
        TopicSpec(TOPICS.dlq, 1, {"retention.ms": week_ms}),
    )


async def ensure_topics(
    bootstrap: str,
    specs: tuple[TopicSpec, ...] | list[TopicSpec],
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    kw = security.aiokafka_kwargs() if security is not None else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **kw)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in missing]
            )
        return [s.name for s in missing]
    except KafkaError as exc:
        raise StackError(f"could not create Kafka topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()


async def wait_for_leaders(
    bootstrap: str,
    specs: list[TopicSpec],
    security: KafkaSecurity | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Wait until every partition of each topic has a leader (a topic just
    created has none for a moment); :class:`StackError` after ``timeout_s``."""
    import asyncio
    import time

    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    kw = security.aiokafka_kwargs() if security is not None else {}
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **kw)
    deadline = time.monotonic() + timeout_s
    waiting = [s.name for s in specs]
    try:
        await client.bootstrap()
        while True:
            try:
                md = await client.fetch_all_metadata()
            except KafkaError:
                md = None
            if md is not None:
                waiting = [
                    s.name
                    for s in specs
                    if len(md.partitions_for_topic(s.name) or ()) < s.partitions
                    or any(
                        (md.leader_for_partition(TopicPartition(s.name, p)) or -1) < 0
                        for p in range(s.partitions)
                    )
                ]
                if not waiting:
                    return
            if time.monotonic() > deadline:
                raise StackError(
                    f"Kafka topics without a leader after {timeout_s:.0f} s: {waiting}"
                )
            await asyncio.sleep(0.2)
    finally:
        await client.close()


async def topic_partitions(
    bootstrap: str, topics: list[str], security: KafkaSecurity | None = None
) -> dict[str, int | None] | None:
    """Partition count of each topic (None where it does not exist), or None if Kafka is away."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    kw = security.aiokafka_kwargs() if security is not None else {}
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **kw)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return {t: len(metadata.partitions_for_topic(t) or ()) or None for t in topics}
    except KafkaError:
        return None
    finally:
        await client.close()
