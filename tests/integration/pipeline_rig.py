"""The analytics path without Envoy or the worker: simulated workloads' v1
events produced to Kafka, consumed back, run through the detector pipeline,
verdicts into Redis and alerts into a JSONL file. An integration check of the
Kafka and Redis contracts (``tests/integration/test_pipeline_stack.py``);
``dnsguard demo`` (``streams/stack/demo.py``) runs the whole system instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.pipeline import Pipeline
from detectors.verdicts import Decision
from models import artifact
from streams.ingest.decode import decode_record
from streams.policy.store import read_verdicts, write_verdicts
from streams.sim.workloads import DEFAULT_DATA, Simulator

EVENTS_TOPIC = "dnsguard.events"


@dataclass(frozen=True, slots=True)
class DemoResult:
    events: int
    findings: Counter[str]
    decisions: list[Decision]
    policy_version: int
    verdicts_in_redis: dict[str, dict[str, Any]]
    alerts_path: Path
    undecodable: int


def _allowlist(data_dir: Path, top_n: int) -> list[str]:
    lines = (data_dir / "benign_top.csv").read_text(encoding="utf-8").splitlines()[1 : top_n + 1]
    return [line.split(",", 1)[1] for line in lines]


async def run_pipeline(
    bootstrap: str,
    redis_url: str,
    duration_s: float,
    out_dir: Path,
    data_dir: Path = DEFAULT_DATA,
    topic: str = EVENTS_TOPIC,
    allowlist_top_n: int = 10_000,
) -> DemoResult:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from redis.asyncio import Redis

    sim = Simulator(data_dir)
    start = time.time() - duration_s
    # Join a fresh group positioned at the end of the topic *before* producing,
    # so this run reads its own events and not those of earlier runs.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"dnsguard-demo-{time.time_ns()}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    async with asyncio.timeout(60):
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve "latest" now, before producing
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    sent = 0
    try:
        for ev in sim.events(start, duration_s):
            key = f"{ev['node']['namespace']}/{ev['node']['pod']}".encode()
            await producer.send(topic, json.dumps(ev, separators=(",", ":")).encode(), key=key)
            sent += 1
        await producer.flush()
    except BaseException:
        await consumer.stop()
        raise
    finally:
        await producer.stop()

    model, _ = artifact.load()
    pipeline = Pipeline(model, allowlist=_allowlist(data_dir, allowlist_top_n))
    redis = Redis.from_url(redis_url)
    out_dir.mkdir(parents=True, exist_ok=True)
    alerts_path = out_dir / "alerts.jsonl"
    seen = bad = 0
    findings: Counter[str] = Counter()
    decisions: list[Decision] = []
    version = 0
    try:
        with alerts_path.open("w", encoding="utf-8") as alerts:
            async with asyncio.timeout(120):
                while seen + bad < sent:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for records in batches.values():
                        events = []
                        for rec in records:
                            decoded, rejected = decode_record(rec.value)
                            events += decoded
                            bad += len(rejected)
                        events.sort(key=lambda e: e.ts)
                        seen += len(events)
                        result = pipeline.process(events)
                        for d in result.decisions:
                            findings[d.finding.detector] += 1
                            alerts.write(
                                json.dumps(
                                    {
                                        "detector": d.finding.detector,
                                        "client": d.finding.client,
                                        "namespace": d.finding.namespace,
                                        "name": d.finding.name,
                                        "score": d.finding.score,
                                        "summary": d.finding.summary,
                                        "evidence": d.finding.evidence,
                                        "disposition": d.disposition,
                                    }
                                )
                                + "\n"
                            )
                        decisions.extend(result.decisions)
                        verdicts = [d.verdict for d in result.decisions if d.verdict is not None]
                        _, version = await write_verdicts(redis, verdicts)
        stored = await read_verdicts(redis)
    finally:
        await consumer.stop()
        await redis.aclose()
    return DemoResult(seen, findings, decisions, version, stored, alerts_path, bad)
