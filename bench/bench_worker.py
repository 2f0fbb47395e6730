"""Worker throughput: events/s from a pre-filled topic to verdicts, beside a bare
aiokafka consumer reading the same topic in the same run (the ceiling).

A real Kafka (KRaft) and Redis are started in a temporary folder; N simulated
v1 events are produced once, as the collector writes them: each request of
REQUEST_EVENTS consecutive events (from the simulator's six pods) becomes one
batch record per partition of its clients (6-partition topics). Then, interleaved for ROUNDS rounds, a bare consumer
reads them all, a consumer that also decodes every record (the floor of any
worker), and a fresh worker (new consumer group) processes them all (measured
by its own ``dnsguard_worker_events_total`` metric from the first event
processed, so Faust's start-up and rebalance are not counted: until 80% of
the events, its steady state, and until the last, the whole topic; see
``worker_run`` for what the end of a pre-filled topic costs).

The same events are also produced as a filter sends them under load
(requests of LARGE_REQUEST_EVENTS events: the native module flushes every
200 ms or 2,000 events, the Wasm filter every 100 ms), on a second topic, and
read the same way in the same rounds: Faust's cost is paid per record, the
detectors' per event, and the two record shapes show each. A third topic
holds N events of MANY_PODS browsing pods (3 queries/s each) besides the six,
as a node-local DNS proxy sends them (one node identity, the pods by IP) in
requests of LARGE_REQUEST_EVENTS: a few events per client a request, hundreds
of clients a batch (the per-client state writes at their largest), in at
most one record per partition a request. A fourth holds the same pods each
behind its own sidecar: every pod's events of a bundle window are one small
request, and the collector's bundler (``streams.ingest.bundles``) gathers the
requests of each window per partition, as the collector does at RATE events/s
with its default 20 ms (BUNDLE_EVENTS events a window). The latency run's
paced producer writes what the collector would at RATE: each 20 ms tick's
requests bundled per partition.

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
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.engine.topics import TopicSpec, ensure_topics
from streams.ingest.bundles import Bundler, Record
from streams.ingest.collector import (
    RECORD_MAX_BYTES,
    RECORD_MAX_EVENTS,
    Collector,
    batch_parts,
    records_from_v1,
)
from streams.ingest.decode import decode_record
from streams.settings import CollectorSettings, load_stack_settings
from streams.sim.workloads import DEFAULT_WORKLOADS, Simulator, Workload
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Redis, Stack

ROOT = Path(__file__).resolve().parents[1]

N = int(os.environ.get("BENCH_EVENTS", "100000"))
REQUEST_EVENTS = int(os.environ.get("BENCH_REQUEST_EVENTS", "100"))
LARGE_REQUEST_EVENTS = int(os.environ.get("BENCH_LARGE_REQUEST_EVENTS", "1000"))
MANY_PODS = int(os.environ.get("BENCH_MANY_PODS", "300"))
PARTITIONS = 6  # of each events topic here
TOPIC, LARGE_TOPIC, MANY_TOPIC, SIDECARS_TOPIC = "b.events", "b.large", "b.many", "b.sidecars"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
STEADY_SHARE = 0.8  # the worker's steady-state rate: until this share of the events (worker_run)
OUT = ROOT / "bench" / "results" / "worker.json"


def many_pods(n: int) -> tuple[Workload, ...]:
    """``n`` browsing pods in eight namespaces, besides the simulator's six."""
    return DEFAULT_WORKLOADS + tuple(
        Workload(f"team-{i % 8}", f"app-{i}", f"10.9.{i // 250}.{i % 250 + 1}", "browsing", 3.0)
        for i in range(n)
    )


# a node-local proxy's identity: no pod or workload of its own, so each
# client is known by its IP (as the node-local DNS bootstrap ships them)
NODE_LOCAL = {"id": "node-local~10.0.0.1~node-1", "namespace": "kube-system", "pod": "",
              "workload": ""}  # fmt: skip


async def fill(
    bootstrap: str,
    topic: str = TOPIC,
    request_events: int = REQUEST_EVENTS,
    workloads: tuple[Workload, ...] = DEFAULT_WORKLOADS,
    node: dict[str, str] | None = None,
    bundle: bool = False,
) -> int:
    """Produces the N events of ``workloads`` to ``topic``, in requests of
    ``request_events``; returns the number of records. With ``node``, every
    event is captured there (a node-local proxy: its clients are the pods' IPs).
    With ``bundle``, ``request_events`` is a bundle window: each capture
    point's events in it are a request, bundled per partition."""
    await ensure_topics(
        bootstrap,
        [
            TopicSpec(t, p)
            for t, p in ((topic, PARTITIONS), ("b.alerts", 1), ("b.verdicts", 1), ("b.dlq", 1))
        ],
    )
    sim = Simulator()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    records = 0
    try:
        sent = 0
        start = time.time() - 3600
        request: list[bytes] = []
        while sent < N:
            for e in sim.events(start, 600, workloads):
                if node is not None:
                    e["node"] = dict(e["node"], **node)
                request.append(json.dumps(e).encode())
                sent += 1
                if len(request) == request_events or sent >= N:
                    for k, v in await v2_records(request, bundle):
                        await producer.send(topic, v, key=k)
                        records += 1
                    request = []
                if sent >= N:
                    break
            start += 600
        await producer.flush()
    finally:
        await producer.stop()
    return records


async def v2_records(events: list[bytes], bundle: bool = False) -> list[Record]:
    """What the collector writes to a 6-partition topic for a request of these
    v1 events: v2 batch records, one per partition of its clients. With
    ``bundle``: what it writes for requests of each capture point's events
    arriving within one bundle window (its bundler, with these requests)."""
    dead: list[Record] = []
    if not bundle:
        records, dead = records_from_v1(events, PARTITIONS)
        if dead:
            raise RuntimeError(f"{len(dead)} simulated events were not valid: {dead[0]!r}")
        return records
    requests = [
        batch_parts([b], PARTITIONS) for b in Collector.accept_v1(events, None, dead)
    ]  # one v2 batch per node: each sidecar's request
    if dead:
        raise RuntimeError(f"{len(dead)} simulated events were not valid: {dead[0]!r}")
    out: list[Record] = []

    async def written(records: Sequence[Record], _: Sequence[Record]) -> None:
        out.extend(records)

    # the window's requests in the order they came, in one call: every part is
    # in its bundle before the (zero) linger closes them
    bundler = Bundler(written, 0.0, RECORD_MAX_EVENTS, RECORD_MAX_BYTES)
    await bundler.send([part for parts in requests for part in parts])
    return out


async def bare(bootstrap: str, n_records: int, decode: bool = False, topic: str = TOPIC) -> float:
    """Events/s of a consumer reading every record (and, with ``decode``,
    decoding each into events as the worker does, and nothing else)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bare-{time.time_ns()}",
                                auto_offset_reset="earliest", max_poll_records=1000)  # fmt: skip
    await consumer.start()
    try:
        got, events, t0 = 0, 0, None
        while got < n_records:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=1000)).values():
                if t0 is None:
                    t0 = time.perf_counter()
                got += len(records)
                if decode:
                    events += sum(len(decode_record(r.value)[0]) for r in records)
        if decode and events != N:
            raise RuntimeError(f"decoded {events} events of {N}")
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


def worker_run(
    bootstrap: str, redis_url: str, work: Path, r: int, topic: str = TOPIC
) -> tuple[float, float]:
    """A fresh worker through the topic: events/s until STEADY_SHARE of the
    events were processed (steady state), and until all were (the whole topic).

    The two differ by the end of a pre-filled topic: Faust's consumer fetches
    with a fixed 1.5 s ``fetch_max_wait_ms`` and aiokafka has one fetch in
    flight per broker, so once some partitions are read to their end, that
    fetch waits out the 1.5 s for them while the others' next records wait
    too (a flat 1.5 s, seen at 83% of the events in about one run in four).
    A live topic, whose partitions all keep receiving records, answers that
    fetch at once."""
    (web,) = free_ports(1)
    env = dict(os.environ, DNSGUARD_KAFKA_BOOTSTRAP=bootstrap, DNSGUARD_REDIS_URL=redis_url,
               DNSGUARD_WORKER_APP_ID=f"bench-{r}-{time.time_ns()}", DNSGUARD_EVENTS_TOPIC=topic,
               DNSGUARD_ALERTS_TOPIC="b.alerts", DNSGUARD_VERDICTS_TOPIC="b.verdicts", DNSGUARD_DLQ_TOPIC="b.dlq",
               DNSGUARD_WORKER_WEB_PORT=str(web), DNSGUARD_WORKER_DATA_DIR=str(work / f"w{r}-{topic}"))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t_first = None
        first_count = 0.0
        steady: float | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = processed(web)
            if n > 0 and t_first is None:
                t_first, first_count = time.perf_counter(), n
            if t_first is not None and steady is None and n >= STEADY_SHARE * N:
                steady = (n - first_count) / (time.perf_counter() - t_first)
            if n >= N and t_first is not None and steady is not None:
                return steady, (n - first_count) / (time.perf_counter() - t_first)
            time.sleep(0.05)
        raise RuntimeError("worker did not finish")
    finally:
        proc.terminate()
        proc.wait(30)


RATE = int(os.environ.get("BENCH_RATE", "20000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
# the paced producer sends what fell due in each tick, as the collector's
# bundler writes what came within its default bundle_ms
TICK_S = CollectorSettings().bundle_ms / 1000
BUNDLE_EVENTS = int(RATE * TICK_S)  # the events of a bundle window at RATE


async def paced(bootstrap: str, topic: str, seconds: float, seed: int = 11) -> int:
    """Produce live simulated events at RATE events/s, each stamped when sent,
    as batch records (per client, what fell due in each TICK_S)."""
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
        due: list[bytes] = []
        tick_end = t0 + TICK_S
        for e in sim.events(t0, seconds, workloads):
            target = t0 + sent / RATE
            if target >= tick_end:
                for k, v in await v2_records(due, bundle=True):
                    await producer.send(topic, v, key=k)
                due = []
                if tick_end > time.time():
                    await asyncio.sleep(tick_end - time.time())
                tick_end += TICK_S * max(1, int((target - tick_end) / TICK_S) + 1)
            e["ts"] = rfc3339(max(time.time(), target))
            due.append(json.dumps(e).encode())
            sent += 1
        for k, v in await v2_records(due, bundle=True):
            await producer.send(topic, v, key=k)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def latency_histogram(web: int) -> dict[float, float]:
    """The worker's event-to-decision histogram: cumulative count per bucket bound."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("dnsguard_worker_event_to_verdict_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of what was observed
    between the two snapshots (a conservative figure)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    for b, c in zip(bounds, counts, strict=True):
        if total and c >= q * total:
            return b
    return float("nan")


def within_shares(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """The share of batches whose oldest event was decided within each bucket
    bound, over the run (the histogram has one observation per batch)."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    return {
        f"{b * 1000:g}": round((after[b] - before.get(b, 0.0)) / total, 4)
        for b in sorted(after)
        if total and b != float("inf") and b <= 1
    }


def latency_run(bootstrap: str, redis_url: str, work: Path) -> dict[str, Any]:
    """p50/p99 from a batch's oldest event's timestamp to the batch's decisions,
    at RATE events/s, read from the worker's own histogram over the run."""
    asyncio.run(ensure_topics(bootstrap, [TopicSpec("lat.events", PARTITIONS)]))
    (web,) = free_ports(1)
    env = dict(os.environ, DNSGUARD_KAFKA_BOOTSTRAP=bootstrap, DNSGUARD_REDIS_URL=redis_url.rsplit("/", 1)[0] + "/7",
               DNSGUARD_WORKER_APP_ID=f"lat-{time.time_ns()}", DNSGUARD_EVENTS_TOPIC="lat.events",
               DNSGUARD_ALERTS_TOPIC="b.alerts", DNSGUARD_VERDICTS_TOPIC="b.verdicts", DNSGUARD_DLQ_TOPIC="b.dlq",
               DNSGUARD_WORKER_WEB_PORT=str(web), DNSGUARD_WORKER_DATA_DIR=str(work / "lat"))  # fmt: skip
    log = (work / "lat.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                            stdout=log, stderr=log)  # fmt: skip
    try:
        # Warm up: the worker joins the group, gets its partitions and has
        # processed a first stream of events before the clock starts.
        warm = asyncio.run(paced(bootstrap, "lat.events", 3.0, seed=5))
        deadline = time.monotonic() + 120
        while processed(web) < warm and time.monotonic() < deadline:
            time.sleep(0.2)
        before, done_before = latency_histogram(web), processed(web)
        sent = asyncio.run(paced(bootstrap, "lat.events", LATENCY_SECONDS))
        deadline = time.monotonic() + 60
        while processed(web) < done_before + sent and time.monotonic() < deadline:
            time.sleep(0.2)
        after, done = latency_histogram(web), processed(web) - done_before
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            tail = (work / "lat.log").read_text(errors="replace")[-3000:]
            print(f"the latency run's worker did not stop within 30 s of SIGTERM:\n{tail}")
        log.close()
    return {
        "events": sent,
        "processed": done,
        "p50_ms": quantile(before, after, 0.5) * 1000,
        "p99_ms": quantile(before, after, 0.99) * 1000,
        "share_within_ms": within_shares(before, after),
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
        bootstrap = stack.settings.kafka_bootstrap
        n_records = asyncio.run(fill(bootstrap))
        n_large = asyncio.run(fill(bootstrap, LARGE_TOPIC, LARGE_REQUEST_EVENTS))
        n_many = asyncio.run(
            fill(bootstrap, MANY_TOPIC, LARGE_REQUEST_EVENTS, many_pods(MANY_PODS), NODE_LOCAL)
        )
        n_sidecars = asyncio.run(
            fill(bootstrap, SIDECARS_TOPIC, BUNDLE_EVENTS, many_pods(MANY_PODS), bundle=True)
        )
        shapes = {TOPIC: n_records, LARGE_TOPIC: n_large, MANY_TOPIC: n_many,
                  SIDECARS_TOPIC: n_sidecars}  # fmt: skip
        rates: dict[str, dict[str, list[float]]] = {
            t: {
                "bare aiokafka consumer": [],
                "decoding consumer": [],
                "dnsguard worker": [],
                "dnsguard worker, whole topic": [],
            }
            for t in shapes
        }
        for r in range(ROUNDS):
            for topic, n in shapes.items():
                got = rates[topic]
                got["bare aiokafka consumer"].append(asyncio.run(bare(bootstrap, n, topic=topic)))
                got["decoding consumer"].append(asyncio.run(bare(bootstrap, n, True, topic)))
                steady, whole = worker_run(bootstrap, stack.settings.redis_url, work, r, topic)
                got["dnsguard worker"].append(steady)
                got["dnsguard worker, whole topic"].append(whole)
        latency = latency_run(stack.settings.kafka_bootstrap, stack.settings.redis_url, work)
    finally:
        stack.down()
    figures = {
        topic: _figures(rates[topic], n, size)
        for topic, n, size in (
            (TOPIC, n_records, REQUEST_EVENTS),
            (LARGE_TOPIC, n_large, LARGE_REQUEST_EVENTS),
            (MANY_TOPIC, n_many, LARGE_REQUEST_EVENTS),
            (SIDECARS_TOPIC, n_sidecars, BUNDLE_EVENTS),
        )
    }
    figures[MANY_TOPIC]["pods"] = len(DEFAULT_WORKLOADS) + MANY_PODS
    figures[SIDECARS_TOPIC]["pods"] = len(DEFAULT_WORKLOADS) + MANY_PODS
    figures[SIDECARS_TOPIC]["bundle_window_events"] = BUNDLE_EVENTS
    print(
        f"event -> decision at {RATE} events/s for {LATENCY_SECONDS:.0f}s ({latency['processed']:,.0f} of "
        f"{latency['events']:,} events processed): p50 <= {latency['p50_ms']:.0f} ms, "
        f"p99 <= {latency['p99_ms']:.0f} ms (bucket upper bounds; target p99 <= 100 ms)\n"
        "share of batches whose oldest event was decided within (ms): "
        + ", ".join(f"{k}: {v:.3f}" for k, v in latency["share_within_ms"].items())
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    main_shape = figures[TOPIC]
    OUT.write_text(
        json.dumps(
            {"bench": "worker", **main_shape, "large_records": figures[LARGE_TOPIC],
             "many_pods": figures[MANY_TOPIC], "sidecars_bundled": figures[SIDECARS_TOPIC],
             "latency": {"rate_events_per_s": RATE, **latency}},
            indent=2,
        )
        + "\n"
    )  # fmt: skip


def _figures(rates: dict[str, list[float]], n_records: int, request_events: int) -> dict[str, Any]:
    """One record shape's medians, printed, and as they go into the results."""
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["dnsguard worker"] / med["bare aiokafka consumer"]
    ratio_decoding = med["dnsguard worker"] / med["decoding consumer"]
    print(
        f"{N} events in {n_records} batch records ({N / n_records:.1f} events each; requests of "
        f"{request_events} events), a 6-partition topic, one worker process, median of {ROUNDS} interleaved rounds"
    )
    for name, v in med.items():
        print(f"{name:26s} {v:10,.0f} events/s")
    print(f"worker / bare consumer: {ratio:.2f}; worker / decoding consumer: {ratio_decoding:.2f}")
    return {
        "events": N,
        "records": n_records,
        "request_events": request_events,
        "median_events_per_s": med,
        "ratio": ratio,
        "ratio_vs_decoding_consumer": ratio_decoding,
        "rounds": rates,
    }


if __name__ == "__main__":
    main()
