"""The loop rig: a real Envoy with the filter and a policy feed, the real
feed server on a Redis of its own (so tests can stop it), a proxy between
Envoy and the feed that can tamper with what it relays, the collector and a
Kafka topic; and a worker process to run beside it. Used by the enforcement
and security tests (the ``loop_rig`` fixture lives in conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
from aiohttp import ClientSession, web
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.engine.topics import TopicSpec, ensure_topics
from streams.policy.signing import SigningKey
from streams.policy.store import write_verdicts
from streams.settings import load_stack_settings
from streams.sim.resolver import Upstream, UpstreamServer
from streams.stack.envoy import FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import (
    CollectorProcess,
    EnvoyProcess,
    FeedProcess,
    free_ports,
)
from streams.stack.services import Redis as RedisService
from streams.stack.services import Stack
from tests.e2e.conftest import TOKEN

# fixed test keys (seeds of 32 equal bytes): the feed signs with k1; the filter
# also accepts k0, a key being rotated out
FEED_SIGNING_KEY = "k1:" + base64.b64encode(bytes([1]) * 32).decode()
FEED_KEY = ("k1", SigningKey.parse(FEED_SIGNING_KEY).public_b64)
RETIRED_KEY = (
    "k0",
    SigningKey.parse("k0:" + base64.b64encode(bytes([2]) * 32).decode()).public_b64,
)
FEED_TOKEN = "e2e-feed-token-0123456"


def start_feed(port: int, redis_url: str, log: Path) -> FeedProcess:
    """The feed server, signing with the test key."""
    return FeedProcess(port, redis_url, log, FEED_SIGNING_KEY, FEED_TOKEN).start()


class TamperProxy:
    """Relays feed requests; ``mode`` decides what it does to the answers."""

    def __init__(self, port: int, feed_port: int) -> None:
        self.port, self.feed_port = port, feed_port
        self.mode = "pass"  # pass | tamper | unsigned | replay | oversize
        self.recorded: list[tuple[int, dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        url = f"http://127.0.0.1:{self.feed_port}{request.path_qs}"
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        if self.mode != "pass":
            # make the feed answer with a body right away (not a long-poll 304)
            url = url.split("?")[0] + "?since=0"
            headers.pop("If-None-Match", None)
        try:
            async with ClientSession() as s, s.get(url, headers=headers) as r:
                body = await r.read()
                out = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower().startswith(("x-dnsguard", "etag"))
                }
                status = r.status
        except OSError:
            return web.Response(status=502)
        if status == 200 and self.mode == "pass":
            self.recorded.append((status, out, body))
        elif status == 200 and self.mode == "tamper":
            body = body.replace(b"nxdomain", b"shadow")
        elif status == 200 and self.mode == "unsigned":
            out.pop("X-Dnsguard-Signature", None)
        elif self.mode == "replay" and self.recorded:
            status, out, body = self.recorded[0]
        elif self.mode == "oversize":
            body = body + b"\n" * (2 << 20)
        return web.Response(status=status, body=body, headers=out)

    def __enter__(self) -> TamperProxy:
        self._thread.start()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._relay)

        async def start() -> web.AppRunner:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@dataclass
class LoopRig:
    ports: FilterPorts
    upstream: Upstream
    envoy: EnvoyProcess
    feed: FeedProcess
    proxy: TamperProxy
    redis_stack: Stack
    redis_url: str
    topic: str
    bootstrap: str

    def block(self, name: str, scope: str = "*", action: str = "nxdomain", ttl: float = 600) -> int:
        now = time.time()
        v = Verdict(scope, name, "suffix", action, "dga", 0.99, "test verdict", now, now + ttl)

        async def run() -> int:
            client = Redis.from_url(self.redis_url)
            try:
                return (await write_verdicts(client, [v]))[1]
            finally:
                await client.aclose()

        return asyncio.run(run())

    def policy_version(self) -> int:
        """The policy version in Redis now."""

        async def run() -> int:
            client = Redis.from_url(self.redis_url)
            try:
                return (await write_verdicts(client, []))[1]
            finally:
                await client.aclose()

        return asyncio.run(run())

    def query(self, name: str, rtype: str = "A") -> dns.message.Message:
        q = dns.message.make_query(name, rtype)
        return dns.query.tcp(q, "127.0.0.1", port=self.ports.dns_tcp, timeout=5)

    def query_udp(self, name: str, rtype: str = "A") -> dns.message.Message:
        """``name`` through the UDP listener (the native module, then udp_proxy)."""
        q = dns.message.make_query(name, rtype)
        assert self.ports.dns_udp is not None
        return dns.query.udp(q, "127.0.0.1", port=self.ports.dns_udp, timeout=5)

    def query_native_tcp(self, name: str, rtype: str = "A") -> dns.message.Message:
        """``name`` through the TCP listener of the native module (then tcp_proxy)."""
        q = dns.message.make_query(name, rtype)
        assert self.ports.native_tcp is not None
        return dns.query.tcp(q, "127.0.0.1", port=self.ports.native_tcp, timeout=5)

    def reached_upstream(self, name: str, transport: str | None = None) -> bool:
        return any(
            n == name and (transport is None or t == transport)
            for t, n, _ in self.upstream.received
        )

    def wait_version(self, version: int, timeout: float = 10) -> None:
        """Until the Wasm filter and the native module (UDP and TCP) all enforce ``version``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wasm = self.envoy.stats().get("feed_version", 0)
            native = self.envoy.module_stats().get("feed_version", 0)
            tcp = self.envoy.tcp_module_stats().get("feed_version", 0)
            if min(wasm, native, tcp) >= version:
                time.sleep(0.15)  # every worker VM picks it up on its next tick (100 ms)
                return
            time.sleep(0.05)
        raise AssertionError(
            f"filter never reached policy version {version}: "
            f"{self.envoy.stats()} {self.envoy.module_stats()} {self.envoy.tcp_module_stats()}"
        )


@contextlib.contextmanager
def start_loop(kafka_bootstrap: str, wasm_module: Path, work: Path) -> Iterator[LoopRig]:
    (admin, dns_tcp, dns_udp, up, up_doh, col, doh, feed_port, proxy_port, redis_port,
     native_tcp) = free_ports(11)  # fmt: skip
    redis_stack = Stack(
        replace(load_stack_settings({}), state_dir=work / "redis", redis_port=redis_port),
        (RedisService,),
    )
    redis_stack.up()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    topic = f"e2e.loop.{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(topic + ".dlq", 1)]))
    ports = FilterPorts(
        admin=admin,
        dns_tcp=dns_tcp,
        upstream_dns=up,
        collector=col,
        doh=doh,
        upstream_doh=up_doh,
        feed=proxy_port,
        dns_udp=dns_udp,
        native_tcp=native_tcp,
    )
    opts = FilterOptions(
        token=TOKEN,
        feed_keys=(RETIRED_KEY, FEED_KEY),
        feed_token=FEED_TOKEN,
        feed_poll_interval_ms=200,
        feed_max_bytes=1 << 20,
        sinkhole_a="192.0.2.53",
    )
    upstream = Upstream()
    feed = start_feed(feed_port, redis_url, work / "feed.log")
    with UpstreamServer(upstream, up, up_doh), TamperProxy(proxy_port, feed_port) as proxy:
        collector = CollectorProcess(
            col, kafka_bootstrap, topic, topic + ".dlq", work / "collector.log", TOKEN
        )
        envoy = EnvoyProcess(filter_bootstrap(ports, opts), work).start()
        try:
            yield LoopRig(
                ports, upstream, envoy, feed, proxy, redis_stack, redis_url, topic, kafka_bootstrap
            )
        finally:
            envoy.stop()
            collector.stop()
            feed.stop()
            redis_stack.down()


def uniq(prefix: str = "dga") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}.example.net"


def dga_burst(shared: Path, n: int, family: str = "cryptolocker", seed: int = 7) -> list[str]:
    """``n`` names of one DGA family that the shipped model counts as DGA-like
    (at its evidence level), in the family's order from a random start."""
    import csv
    import random

    from models import artifact

    with (shared / "dga_train.csv").open() as fh:
        names = [row["domain"] for row in csv.DictReader(fh) if row["family"] == family]
    model, _ = artifact.load()
    start = random.Random(seed).randrange(len(names) - 4 * n)
    window = names[start : start + 4 * n]
    scores = model.score_batch(window)
    return [name for name, s in zip(window, scores, strict=True)
            if s >= model.thresholds["evidence"]][:n]  # fmt: skip


def popular_names(shared: Path, n: int) -> list[str]:
    import csv

    with (shared / "benign_top.csv").open() as fh:
        return [row["domain"] for _, row in zip(range(n), csv.DictReader(fh), strict=False)]


class WorkerProcess:
    def __init__(self, rig: LoopRig, work: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.alerts = f"e2e.alerts.{tag}"
        asyncio.run(
            ensure_topics(
                rig.bootstrap,
                [
                    TopicSpec(self.alerts, 1),
                    TopicSpec(f"e2e.verdicts.{tag}", 1, {"cleanup.policy": "compact"}),
                ],
            )
        )
        self.web_port = free_ports(1)[0]
        env = dict(
            os.environ,
            DNSGUARD_KAFKA_BOOTSTRAP=rig.bootstrap,
            DNSGUARD_REDIS_URL=rig.redis_url,
            DNSGUARD_WORKER_APP_ID=f"e2e-{tag}",
            DNSGUARD_EVENTS_TOPIC=rig.topic,
            DNSGUARD_ALERTS_TOPIC=self.alerts,
            DNSGUARD_VERDICTS_TOPIC=f"e2e.verdicts.{tag}",
            DNSGUARD_DLQ_TOPIC=rig.topic + ".dlq",
            DNSGUARD_WORKER_WEB_PORT=str(self.web_port),
            DNSGUARD_WORKER_DATA_DIR=str(work / "worker"),
        )
        self.log = work / "worker.log"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def processed(self) -> float:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("dnsguard_worker_events_total")
        )

    def counters(self) -> str:
        """The worker's dnsguard counters, for a failure message."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError as exc:
            return f"metrics unavailable: {exc}"
        return "; ".join(
            line
            for line in text.splitlines()
            if line.startswith("dnsguard_worker_") and "_total" in line and not line.startswith("#")
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
