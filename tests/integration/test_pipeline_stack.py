"""The analytics path on real Kafka and Redis: simulated events in, verdicts out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.engine.topics import TopicSpec, ensure_topics
from streams.policy.store import CHANGES, VERSION, read_verdicts, write_verdicts
from tests.integration.pipeline_rig import run_pipeline

pytestmark = pytest.mark.integration


def _verdict(name: str, expires: float) -> Verdict:
    return Verdict("*", name, "suffix", "nxdomain", "dga", 0.9999, "test", 0.0, expires)


def test_verdict_store_is_versioned_idempotent_and_logged(redis_url: str) -> None:
    async def run() -> None:
        client = Redis.from_url(redis_url)
        try:
            await client.delete(VERSION, CHANGES, "dnsguard:verdicts", "dnsguard:verdicts:expiry")
            changed, v1 = await write_verdicts(
                client, [_verdict("a.biz", 100), _verdict("b.biz", 100)]
            )
            assert (changed, v1) == (2, 1)
            # the same verdicts again: nothing changes, the version stays
            assert await write_verdicts(client, [_verdict("a.biz", 100)]) == (0, 1)
            # an older copy never overwrites a newer one
            assert await write_verdicts(client, [_verdict("a.biz", 50)]) == (0, 1)
            # a later expiry is a change: one new version for the whole batch
            assert await write_verdicts(
                client, [_verdict("a.biz", 200), _verdict("c.biz", 10)]
            ) == (2, 2)
            stored = await read_verdicts(client)
            assert set(stored) == {"*|a.biz", "*|b.biz", "*|c.biz"}
            assert stored["*|a.biz"]["expires"] == 200
            log = await client.xrange(CHANGES)
            assert [(e[b"version"], e[b"key"]) for _, e in log] == [
                (b"1", b"*|a.biz"),
                (b"1", b"*|b.biz"),
                (b"2", b"*|a.biz"),
                (b"2", b"*|c.biz"),
            ]
        finally:
            await client.aclose()

    asyncio.run(run())


def test_simulated_traffic_through_kafka_yields_verdicts_in_redis(
    kafka_bootstrap: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(unique_topic, 3)]))
    result = asyncio.run(
        run_pipeline(
            kafka_bootstrap, redis_url, duration_s=30, out_dir=tmp_path, topic=unique_topic
        )
    )
    assert result.events > 1000
    assert result.undecodable == 0
    assert result.findings["infected_client"] >= 2  # the pod named, then its C2
    assert result.findings["nxdomain_storm"] >= 1
    by_client = {d.finding.client for d in result.decisions if d.verdict is not None}
    # only the infected and the exfiltrating pods earn verdicts; browsing pods none
    assert by_client <= {"payments/batch-1f0a", "analytics/etl-9c3e"}
    assert "payments/batch-1f0a" in by_client
    blocked = {d.verdict.key for d in result.decisions if d.verdict is not None}
    assert blocked <= set(result.verdicts_in_redis)
    assert result.policy_version >= 1
    assert result.alerts_path.read_text().count("\n") == sum(result.findings.values())
