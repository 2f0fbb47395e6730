"""Worker throughput: events/s from a pre-filled topic to verdicts, beside a bare
aiokafka consumer reading the same topic in the same run (the ceiling).

A real Kafka (KRaft) and Redis are started in a temporary folder; N simulated
v1 events are produced once; then, interleaved for ROUNDS rounds, a bare
consumer reads them all, and a fresh worker (new consumer group) processes them
all (measured by its own ``dnsguard_worker_events_total`` metric, from the
first event processed to the last, so Faust's start-up and rebalance are not
counted).

Run: ``.venv/bin/python -m bench.bench_worker`` (writes bench/results/worker.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.engine.topics import TopicSpec, ensure_topics
from streams.settings import load_stack_settings
from streams.sim.workloads import Simulator
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Redis, Stack

ROOT = Path(__file__).resolve().parents[1]

N = int(os.environ.get("BENCH_EVENTS", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OUT = ROOT / "bench" / "results" / "worker.json"


async def fill(bootstrap: str) -> None:
    await ensure_topics(
        bootstrap,
        [
            TopicSpec(t, p)
            for t, p in (("b.events", 6), ("b.alerts", 1), ("b.verdicts", 1), ("b.dlq", 1))
        ],
    )
    sim = Simulator()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        sent = 0
        start = time.time() - 3600
        while sent < N:
            for e in sim.events(start, 600):
                await producer.send(
                    "b.events",
                    json.dumps(e).encode(),
                    key=f"{e['node']['namespace']}/{e['node']['pod']}".encode(),
                )
                sent += 1
                if sent >= N:
                    break
            start += 600
        await producer.flush()
    finally:
        await producer.stop()


async def bare(bootstrap: str) -> float:
    consumer = AIOKafkaConsumer("b.events", bootstrap_servers=bootstrap, group_id=f"bare-{time.time_ns()}",
                                auto_offset_reset="earliest", max_poll_records=1000)  # fmt: skip
    await consumer.start()
    try:
        got, t0 = 0, None
        while got < N:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=1000)).values():
                if t0 is None:
                    t0 = time.perf_counter()
                got += len(records)
        return N / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await consumer.stop()


def processed(web: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("dnsguard_worker_events_total"):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def worker_run(bootstrap: str, redis_url: str, work: Path, r: int) -> float:
    (web,) = free_ports(1)
    env = dict(os.environ, DNSGUARD_KAFKA_BOOTSTRAP=bootstrap, DNSGUARD_REDIS_URL=redis_url,
               DNSGUARD_WORKER_APP_ID=f"bench-{r}-{time.time_ns()}", DNSGUARD_EVENTS_TOPIC="b.events",
               DNSGUARD_ALERTS_TOPIC="b.alerts", DNSGUARD_VERDICTS_TOPIC="b.verdicts", DNSGUARD_DLQ_TOPIC="b.dlq",
               DNSGUARD_WORKER_WEB_PORT=str(web), DNSGUARD_WORKER_DATA_DIR=str(work / f"w{r}"))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t_first = None
        first_count = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = processed(web)
            if n > 0 and t_first is None:
                t_first, first_count = time.perf_counter(), n
            if n >= N and t_first is not None:
                return (n - first_count) / (time.perf_counter() - t_first)
            time.sleep(0.05)
        raise RuntimeError("worker did not finish")
    finally:
        proc.terminate()
        proc.wait(30)


RATE = int(os.environ.get("BENCH_RATE", "5000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))


async def paced(bootstrap: str, topic: str, seconds: float, seed: int = 11) -> int:
    """Produce live simulated events at RATE events/s, each stamped when sent."""
    from streams.sim.workloads import DEFAULT_WORKLOADS, Workload, rfc3339

    # Scale the simulated workloads so that together they produce RATE events/s.
    total = sum(w.qps for w in DEFAULT_WORKLOADS)
    workloads = tuple(
        Workload(w.namespace, w.pod, w.ip, w.kind, w.qps * RATE / total) for w in DEFAULT_WORKLOADS
    )
    sim = Simulator(seed=seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    await producer.start()
    sent = 0
    try:
        t0 = time.time()
        for e in sim.events(t0, seconds, workloads):
            due = time.time()
            target = t0 + sent / RATE
            if target > due:
                await asyncio.sleep(target - due)
            e["ts"] = rfc3339(time.time())
            await producer.send(
                topic,
                json.dumps(e).encode(),
                key=f"{e['node']['namespace']}/{e['node']['pod']}".encode(),
            )
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def latency_run(bootstrap: str, redis_url: str, work: Path) -> dict[str, float]:
    """p50/p99 from an event's timestamp to its verdict's entry in the Redis change log."""
    import redis as redis_sync

    asyncio.run(ensure_topics(bootstrap, [TopicSpec("lat.events", 6)]))
    (web,) = free_ports(1)
    env = dict(os.environ, DNSGUARD_KAFKA_BOOTSTRAP=bootstrap, DNSGUARD_REDIS_URL=redis_url.rsplit("/", 1)[0] + "/7",
               DNSGUARD_WORKER_APP_ID=f"lat-{time.time_ns()}", DNSGUARD_EVENTS_TOPIC="lat.events",
               DNSGUARD_ALERTS_TOPIC="b.alerts", DNSGUARD_VERDICTS_TOPIC="b.verdicts", DNSGUARD_DLQ_TOPIC="b.dlq",
               DNSGUARD_WORKER_WEB_PORT=str(web), DNSGUARD_WORKER_DATA_DIR=str(work / "lat"),
               DNSGUARD_WORKER_BATCH_MAX="500")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Warm up: the worker joins the group, gets its partitions and has
        # processed a first stream of events before the clock starts.
        warm = asyncio.run(paced(bootstrap, "lat.events", 3.0, seed=5))
        deadline = time.monotonic() + 120
        while processed(web) < warm and time.monotonic() < deadline:
            time.sleep(0.2)
        t_start = time.time()
        sent = asyncio.run(paced(bootstrap, "lat.events", LATENCY_SECONDS))
        time.sleep(5)
    finally:
        proc.terminate()
        proc.wait(30)
    r = redis_sync.Redis.from_url(env["DNSGUARD_REDIS_URL"])
    stored = cast(dict[bytes, bytes], r.hgetall("dnsguard:verdicts"))
    verdicts = {k.decode(): json.loads(v) for k, v in stored.items()}
    lat = []
    changes = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange("dnsguard:changes"))
    for _, fields in changes:
        ms = int(fields[b"at"])  # Redis time when the verdict was written
        v = verdicts.get(fields[b"key"].decode())
        if v is not None and v["created"] >= t_start:
            lat.append(ms / 1000 - v["created"])
    r.close()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "events": sent,
        "verdicts": len(lat),
        "p50_ms": pct(0.5) * 1000,
        "p99_ms": pct(0.99) * 1000,
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dnsguard-bench-worker-"))
    k, c, rp = free_ports(3)
    stack = Stack(
        replace(
            load_stack_settings({}),
            state_dir=work,
            kafka_port=k,
            kafka_controller_port=c,
            redis_port=rp,
        ),
        (Redis, Kafka),
    )
    stack.up()
    try:
        asyncio.run(fill(stack.settings.kafka_bootstrap))
        rates: dict[str, list[float]] = {"bare aiokafka consumer": [], "dnsguard worker": []}
        for r in range(ROUNDS):
            rates["bare aiokafka consumer"].append(
                asyncio.run(bare(stack.settings.kafka_bootstrap))
            )
            rates["dnsguard worker"].append(
                worker_run(stack.settings.kafka_bootstrap, stack.settings.redis_url, work, r)
            )
        latency = latency_run(stack.settings.kafka_bootstrap, stack.settings.redis_url, work)
    finally:
        stack.down()
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["dnsguard worker"] / med["bare aiokafka consumer"]
    print(
        f"{N} events in a 6-partition topic, one worker process, median of {ROUNDS} interleaved rounds"
    )
    for name, v in med.items():
        print(f"{name:26s} {v:10,.0f} events/s")
    print(f"worker / bare consumer: {ratio:.2f} (targets: >= 0.5 and >= 30,000 events/s)")
    print(
        f"event -> verdict in Redis at {RATE} events/s for {LATENCY_SECONDS:.0f}s: {latency['verdicts']} verdicts, "
        f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms (target p99 <= 300 ms)"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "bench": "worker",
                "events": N,
                "median_events_per_s": med,
                "ratio": ratio,
                "rounds": rates,
                "latency": {"rate_events_per_s": RATE, **latency},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
