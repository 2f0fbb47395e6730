"""Detection-to-enforcement time: from the first query for a DGA name through
Envoy to the first query for it that the filter answers itself.

The whole loop runs for real: Envoy with the filter -> collector -> Kafka ->
worker -> Redis -> feed -> filter shared data. Two Envoys poll the same feed:
one with the filter's defaults (long poll: the feed answers as soon as the
policy changes), one with plain polling every poll_interval_ms (1 s) — the
baseline measured in the same run. Each run takes a fresh DGA name from the
shared data (scored far above threshold by the shipped model), sends one
query through the first Envoy, then asks both Envoys every 10 ms until each
answers NXDOMAIN.

Run: ``.venv/bin/python -m bench.bench_propagation`` (after ``make setup``);
BENCH_RUNS (default 25). Prints p50/p99 and writes bench/results/propagation.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from streams.engine.topics import TopicSpec, ensure_topics
from streams.policy.signing import SigningKey
from streams.settings import load_stack_settings
from streams.sim.resolver import Upstream, UpstreamServer
from streams.sim.workloads import DEFAULT_DATA as SHARED_DATA
from streams.sim.workloads import confident_dga_names, popular_names
from streams.stack.envoy import FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import CollectorProcess, EnvoyProcess, FeedProcess, free_ports
from streams.stack.services import Kafka, Redis, Stack

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results" / "propagation.json"
RUNS = int(os.environ.get("BENCH_RUNS", "25"))
# this run's own secrets: the collector and feed tokens, the feed's signing key
TOKEN, FEED_TOKEN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
SIGNING_KEY = "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()
FEED_KEY = ("bench", SigningKey.parse(SIGNING_KEY).public_b64)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def ask(port: int, name: str) -> int:
    q = dns.message.make_query(name, "A")
    return dns.query.tcp(q, "127.0.0.1", port=port, timeout=5).rcode()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dnsguard-prop-"))
    kafka, controller, redis_port = free_ports(3)
    stack = Stack(
        replace(load_stack_settings({}), state_dir=work / "stack", kafka_port=kafka,
                kafka_controller_port=controller, redis_port=redis_port, kafka_heap_mb=512),
        (Redis, Kafka),
    )  # fmt: skip
    stack.up()
    bootstrap, redis_url = stack.settings.kafka_bootstrap, stack.settings.redis_url
    asyncio.run(ensure_topics(bootstrap, [TopicSpec("p.events", 3), TopicSpec("p.alerts", 1),
                                          TopicSpec("p.verdicts", 1, {"cleanup.policy": "compact"}),
                                          TopicSpec("p.dlq", 1)]))  # fmt: skip
    (admin_a, admin_b, dns_a, dns_b, up, up_doh, col, feed_port, web) = free_ports(9)
    upstream = Upstream()
    names = confident_dga_names(SHARED_DATA, RUNS + 5, seed=11)
    procs: list[FeedProcess | CollectorProcess | EnvoyProcess] = []
    try:
        with UpstreamServer(upstream, up, up_doh):
            feed = FeedProcess(
                feed_port, redis_url, work / "feed.log", SIGNING_KEY, FEED_TOKEN
            ).start()
            procs.append(feed)
            collector = CollectorProcess(
                col, bootstrap, "p.events", "p.dlq", work / "collector.log", TOKEN
            )
            procs.append(collector)
            envoys = {}
            for label, admin, port, long_poll in (
                ("long-poll", admin_a, dns_a, 20_000),
                ("poll-1s", admin_b, dns_b, 0),
            ):
                ports = FilterPorts(
                    admin=admin, dns_tcp=port, upstream_dns=up, collector=col, feed=feed_port
                )
                opts = FilterOptions(token=TOKEN, feed_keys=(FEED_KEY,), feed_token=FEED_TOKEN,
                                     feed_long_poll_ms=long_poll)  # fmt: skip
                (work / label).mkdir()
                envoys[label] = (
                    EnvoyProcess(filter_bootstrap(ports, opts), work / label).start(),
                    port,
                )
                procs.append(envoys[label][0])
            import subprocess

            env = dict(os.environ, DNSGUARD_KAFKA_BOOTSTRAP=bootstrap, DNSGUARD_REDIS_URL=redis_url,
                       DNSGUARD_WORKER_APP_ID=f"prop-{time.time_ns()}", DNSGUARD_EVENTS_TOPIC="p.events",
                       DNSGUARD_ALERTS_TOPIC="p.alerts", DNSGUARD_VERDICTS_TOPIC="p.verdicts",
                       DNSGUARD_DLQ_TOPIC="p.dlq", DNSGUARD_WORKER_WEB_PORT=str(web),
                       DNSGUARD_WORKER_DATA_DIR=str(work / "worker"))  # fmt: skip
            with (work / "worker.log").open("ab") as log:
                worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                                          stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            from bench.bench_worker import processed

            benign = popular_names(SHARED_DATA, 50)
            deadline = time.monotonic() + 120
            while processed(web) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError((work / "worker.log").read_text()[-3000:])
                ask(dns_a, benign[0])
                time.sleep(0.5)
            results: dict[str, list[float]] = {label: [] for label in envoys}
            for i, name in enumerate(names[:RUNS]):
                ask(dns_a, benign[i % len(benign)])
                t0 = time.perf_counter()
                ask(dns_a, name)  # the first query: goes through, becomes an event
                pending = set(envoys)
                while pending:
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError(f"{name} not blocked by {pending} within 30 s")
                    for label in list(pending):
                        if ask(envoys[label][1], name) == dns.rcode.NXDOMAIN:
                            results[label].append(time.perf_counter() - t0)
                            pending.discard(label)
                    time.sleep(0.01)
                time.sleep(0.3)
            worker.terminate()
            worker.wait(20)
    finally:
        for p in reversed(procs):
            p.stop()
        stack.down()

    summary = {
        label: {
            "runs": len(xs),
            "p50_ms": round(statistics.median(xs) * 1000, 1),
            "p99_ms": round(pct(xs, 99) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1),
        }
        for label, xs in results.items()
    }
    ratio = summary["poll-1s"]["p50_ms"] / summary["long-poll"]["p50_ms"]
    print(f"first malicious query -> first query blocked in Envoy ({RUNS} runs, same stack)")
    print(f"{'feed mode':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, s in summary.items():
        print(f"{label:<12} {s['p50_ms']:>8} {s['p99_ms']:>8} {s['max_ms']:>8}")
    print(f"plain 1 s polling / long poll (p50): {ratio:.2f}x; target p99 <= 1000 ms")
    OUT.write_text(json.dumps({"summary": summary, "p50_ratio_poll_over_longpoll": round(ratio, 2),
                               "raw_s": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
