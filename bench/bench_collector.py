"""Collector throughput into Kafka vs a bare aiokafka producer, same events, same run.

A real single-node Kafka (KRaft) is started in a temporary folder. Each round
sends the same N v1 events (a) straight from an aiokafka producer (acks=all,
idempotent, keyed by client) and (b) through the collector over HTTP in
batches of BATCH with CONCURRENCY requests in flight; rounds are interleaved
and medians reported.

Run: ``.venv/bin/python -m bench.bench_collector`` (writes bench/results/collector.json).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.engine.topics import TopicSpec, ensure_topics
from streams.ingest.collector import Collector
from streams.settings import CollectorSettings, Secret, load_stack_settings
from streams.sim.workloads import Simulator
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Stack

ROOT = Path(__file__).resolve().parents[1]

N = 60_000
BATCH = 500
CONCURRENCY = 4
ROUNDS = 3
OUT = ROOT / "bench" / "results" / "collector.json"


async def bare(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        for start in range(0, len(events), BATCH):
            futures = [
                await producer.send(topic, v, key=k) for k, v in events[start : start + BATCH]
            ]
            await asyncio.gather(*futures)
        return len(events) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


async def through_collector(port: int, bodies: list[bytes]) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with (
                sem,
                session.post(
                    f"http://127.0.0.1:{port}/v1/events",
                    data=body,
                    headers={"Authorization": "Bearer bench-token-0123456789"},
                ) as r,
            ):
                assert r.status == 202, await r.text()

        t0 = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return N / (time.perf_counter() - t0)


async def main_async(bootstrap: str) -> dict[str, list[float]]:
    await ensure_topics(
        bootstrap,
        [TopicSpec("bench.bare", 6), TopicSpec("bench.collector", 6), TopicSpec("bench.dlq", 1)],
    )
    sim = Simulator()
    raw = [
        json.dumps(e, separators=(",", ":")).encode() for e in sim.events(time.time() - 3600, 3600)
    ][:N]
    keyed = [
        (f"{json.loads(r)['node']['namespace']}/{json.loads(r)['node']['pod']}".encode(), r)
        for r in raw
    ]
    bodies = [b"[" + b",".join(raw[i : i + BATCH]) + b"]" for i in range(0, N, BATCH)]
    (port,) = free_ports(1)
    settings = CollectorSettings(
        port=port,
        token=Secret("bench-token-0123456789"),
        kafka_bootstrap=bootstrap,
        events_topic="bench.collector",
        dlq_topic="bench.dlq",
    )
    runner = web.AppRunner(Collector(settings).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rates: dict[str, list[float]] = {"bare aiokafka producer": [], "collector (HTTP -> Kafka)": []}
    try:
        await bare(bootstrap, "bench.bare", keyed[:5000])  # warm up
        for _ in range(ROUNDS):
            rates["bare aiokafka producer"].append(await bare(bootstrap, "bench.bare", keyed))
            rates["collector (HTTP -> Kafka)"].append(await through_collector(port, bodies))
    finally:
        await runner.cleanup()
    return rates


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dnsguard-bench-kafka-"))
    k, c = free_ports(2)
    stack = Stack(
        replace(load_stack_settings({}), state_dir=tmp, kafka_port=k, kafka_controller_port=c),
        (Kafka,),
    )
    stack.up()
    try:
        rates = asyncio.run(main_async(stack.settings.kafka_bootstrap))
    finally:
        stack.down()
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["collector (HTTP -> Kafka)"] / med["bare aiokafka producer"]
    print(
        f"{N} v1 events, batches of {BATCH}, {CONCURRENCY} requests in flight, median of {ROUNDS} interleaved rounds"
    )
    for name, v in med.items():
        print(f"{name:28s} {v:10,.0f} events/s")
    print(f"collector / bare producer: {ratio:.2f} (target >= 0.7)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "bench": "collector",
                "events": N,
                "batch": BATCH,
                "median_events_per_s": med,
                "ratio": ratio,
                "rounds": rates,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
