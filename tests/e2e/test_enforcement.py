"""Enforcement through real Envoy: verdicts in Redis reach the filter through the
signed feed, and blocked names are answered by the filter, never by the resolver.

The feed runs as the real ``dnsguard feed`` process on a private Redis (so the
tests can stop it); a small proxy between Envoy and the feed can tamper with
what it relays, to show what the filter rejects.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
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
import pytest
from aiohttp import ClientSession, web
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.envoy_config import FilterOptions, FilterPorts, filter_bootstrap
from streams.settings import load_stack_settings
from streams.stack import Redis as RedisService
from streams.stack import Stack
from streams.topics import TopicSpec, ensure_topics
from streams.upstream import Upstream, UpstreamServer, address_for
from streams.verdict_store import write_verdicts
from tests.conftest import free_ports
from tests.e2e.conftest import (
    TOKEN,
    CollectorProcess,
    EnvoyProcess,
    events_for,
    records_by_name,
    wait_http,
)
from tests.e2e.test_filter_events import framed, read_framed

pytestmark = pytest.mark.e2e
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

FEED_KEY = ("k1", "feed-secret-0123456789")
FEED_TOKEN = "feed-token"


class FeedProcess:
    def __init__(self, port: int, redis_url: str, log: Path) -> None:
        self.port, self.redis_url, self.log = port, redis_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FeedProcess:
        env = dict(
            os.environ,
            DNSGUARD_FEED_PORT=str(self.port),
            DNSGUARD_FEED_KEYS=f"{FEED_KEY[0]}:{FEED_KEY[1]}",
            DNSGUARD_FEED_TOKEN=FEED_TOKEN,
            DNSGUARD_REDIS_URL=self.redis_url,
        )
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "feed"], env=env, stdout=fh, stderr=fh
            )
        wait_http(f"http://127.0.0.1:{self.port}/healthz")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


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

    def block(
        self, name: str, scope: str = "global", action: str = "nxdomain", ttl: float = 600
    ) -> int:
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

    def reached_upstream(self, name: str) -> bool:
        return any(n == name for _, n, _ in self.upstream.received)

    def wait_version(self, version: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.envoy.stats().get("feed_version", 0) >= version:
                time.sleep(0.15)  # every worker VM picks it up on its next tick (100 ms)
                return
            time.sleep(0.05)
        raise AssertionError(f"filter never reached policy version {version}: {self.envoy.stats()}")


@pytest.fixture(scope="module")
def loop_rig(
    kafka_bootstrap: str, wasm_module: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoopRig]:
    work = tmp_path_factory.mktemp("loop")
    admin, dns_tcp, up, up_doh, col, doh, feed_port, proxy_port, redis_port = free_ports(9)
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
    )
    opts = FilterOptions(
        token=TOKEN,
        feed_keys=(("k0", "retired-key-0123456789"), FEED_KEY),
        feed_token=FEED_TOKEN,
        feed_poll_interval_ms=200,
        feed_max_bytes=1 << 20,
        sinkhole_a="192.0.2.53",
    )
    upstream = Upstream()
    feed = FeedProcess(feed_port, redis_url, work / "feed.log").start()
    with UpstreamServer(upstream, up, up_doh), TamperProxy(proxy_port, feed_port) as proxy:
        collector = CollectorProcess(
            col, kafka_bootstrap, topic, topic + ".dlq", work / "collector.log"
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
    return f"{prefix}{uuid.uuid4().hex[:12]}.example"


def test_a_verdict_in_redis_is_enforced_by_the_filter_and_never_reaches_the_resolver(
    loop_rig: LoopRig,
) -> None:
    bad, benign = uniq(), uniq("ok")
    loop_rig.wait_version(loop_rig.block(bad))
    for name in (bad, "www." + bad):
        r = loop_rig.query(name)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert r.question[0].name.to_text(omit_final_dot=True) == name
        assert not loop_rig.reached_upstream(name)
    ok = loop_rig.query(benign)
    assert ok.rcode() == dns.rcode.NOERROR
    assert ok.answer[0][0].address == address_for(benign)
    assert loop_rig.reached_upstream(benign)
    stats = loop_rig.envoy.stats()
    assert stats["blocked"] >= 2
    assert stats["feed_rejected"] == 0
    events = events_for(loop_rig.bootstrap, loop_rig.topic, {bad, benign})
    assert events[bad][0]["action"] == "blocked"
    assert events[bad][0]["response"]["rcode"] == "NXDOMAIN"
    assert events[bad][0]["policy_version"] >= 1
    assert events[benign][0]["action"] == "allowed"


def test_pipelined_queries_on_one_connection_keep_their_ids_and_order_of_answers(
    loop_rig: LoopRig,
) -> None:
    bad, good1, good2 = uniq(), uniq("ok"), uniq("ok")
    loop_rig.wait_version(loop_rig.block(bad))
    queries = [dns.message.make_query(n, "A") for n in (good1, bad, good2)]
    with socket.create_connection(("127.0.0.1", loop_rig.ports.dns_tcp), timeout=5) as s:
        # all three in one write: the blocked one in the middle
        s.sendall(b"".join(framed(q.to_wire()) for q in queries))
        answers = {}
        for _ in queries:
            r = dns.message.from_wire(read_framed(s))
            answers[r.id] = r
    for q in queries:
        r = answers[q.id]
        assert r.question == q.question
    assert answers[queries[1].id].rcode() == dns.rcode.NXDOMAIN
    assert answers[queries[0].id].rcode() == dns.rcode.NOERROR
    assert not loop_rig.reached_upstream(bad)
    # a blocked query split across reads does not leak its first half either
    bad2 = "www." + bad
    wire = framed(dns.message.make_query(bad2, "A").to_wire())
    with socket.create_connection(("127.0.0.1", loop_rig.ports.dns_tcp), timeout=5) as s:
        s.sendall(wire[:9])
        time.sleep(0.2)
        s.sendall(wire[9:])
        assert dns.message.from_wire(read_framed(s)).rcode() == dns.rcode.NXDOMAIN
    assert not any(bad in n for _, n, _ in loop_rig.upstream.received)


def test_doh_get_and_post_are_answered_locally(loop_rig: LoopRig) -> None:
    bad = uniq()
    loop_rig.wait_version(loop_rig.block(bad))
    q = dns.message.make_query(bad, "A")
    wire = q.to_wire()
    url = f"http://127.0.0.1:{loop_rig.ports.doh}/dns-query"
    get = url + "?dns=" + base64.urlsafe_b64encode(wire).decode().rstrip("=")
    post = urllib.request.Request(
        url, data=wire, headers={"content-type": "application/dns-message"}
    )
    for req in (get, post):
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["content-type"] == "application/dns-message"
            assert r.headers["x-dnsguard"] == "blocked"
            answer = dns.message.from_wire(r.read())
        assert answer.id == q.id
        assert answer.rcode() == dns.rcode.NXDOMAIN
    assert not loop_rig.reached_upstream(bad)


def test_actions_and_scopes(loop_rig: LoopRig) -> None:
    refused, sink, other_ns, own_ns, shadow = (
        uniq(p) for p in ("ref", "sink", "ons", "own", "shd")
    )
    loop_rig.block(refused, action="refused")
    loop_rig.block(sink, action="sinkhole")
    loop_rig.block(other_ns, scope="ns:payments")
    loop_rig.block(shadow, action="shadow")
    loop_rig.wait_version(loop_rig.block(own_ns, scope="ns:shop"))  # the rig's node namespace
    assert loop_rig.query(refused).rcode() == dns.rcode.REFUSED
    r = loop_rig.query(sink)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[0][0].address == "192.0.2.53"
    assert loop_rig.query(sink, "TXT").answer == []  # no sinkhole record for TXT: NODATA
    assert loop_rig.query(own_ns).rcode() == dns.rcode.NXDOMAIN
    assert loop_rig.query(other_ns).rcode() == dns.rcode.NOERROR
    assert loop_rig.reached_upstream(other_ns)
    assert not loop_rig.reached_upstream(own_ns)
    assert loop_rig.query(shadow).rcode() == dns.rcode.NOERROR
    assert loop_rig.reached_upstream(shadow)
    events = events_for(loop_rig.bootstrap, loop_rig.topic, {shadow})
    assert events[shadow][0]["action"] == "shadow"


def test_tampered_unsigned_replayed_and_oversized_feeds_are_rejected(loop_rig: LoopRig) -> None:
    bad = uniq()
    version = loop_rig.block(bad)
    loop_rig.wait_version(version)
    try:
        for mode in ("tamper", "unsigned", "replay", "oversize"):
            stats = loop_rig.envoy.stats()
            before, held = stats["feed_rejected"], stats["feed_version"]
            loop_rig.proxy.mode = mode
            newer = uniq()
            loop_rig.block(newer)  # a change, so the filter fetches (and must refuse) a body
            deadline = time.monotonic() + 10
            while loop_rig.envoy.stats()["feed_rejected"] <= before:
                assert time.monotonic() < deadline, f"{mode}: feed not rejected"
                time.sleep(0.05)
            assert loop_rig.query(bad).rcode() == dns.rcode.NXDOMAIN, mode  # still enforced
            assert loop_rig.envoy.stats()["feed_version"] == held, mode
    finally:
        loop_rig.proxy.mode = "pass"
    # relaying honestly again, the filter catches up
    loop_rig.wait_version(loop_rig.block(uniq()))


def test_fail_static_when_redis_then_the_feed_are_gone_and_expiry_still_applies(
    loop_rig: LoopRig,
) -> None:
    lasting, fleeting = uniq(), uniq("short")
    loop_rig.block(lasting)
    loop_rig.wait_version(loop_rig.block(fleeting, ttl=4))
    expires_at = time.time() + 4
    age_before = loop_rig.envoy.stats()["feed_age_s"]
    loop_rig.redis_stack.down()
    try:
        time.sleep(1.5)
        assert loop_rig.query(lasting).rcode() == dns.rcode.NXDOMAIN
        loop_rig.feed.stop()
        time.sleep(max(0.0, expires_at - time.time()) + 1.5)
        assert loop_rig.query(lasting).rcode() == dns.rcode.NXDOMAIN
        assert not loop_rig.reached_upstream(lasting)
        # the short verdict expired inside the filter, with no feed to say so
        assert loop_rig.query(fleeting).rcode() == dns.rcode.NOERROR
        assert loop_rig.reached_upstream(fleeting)
        stats = loop_rig.envoy.stats()
        assert stats["feed_age_s"] >= age_before + 3, stats
        assert stats["feed_errors"] > 0
    finally:
        loop_rig.redis_stack.up()
        loop_rig.feed.start()
    loop_rig.wait_version(loop_rig.block(uniq()), timeout=20)


def confident_dga_names(shared: Path, n: int, seed: int = 7) -> list[str]:
    """DGA names from the shared data that the shipped model scores far above its threshold."""
    import csv
    import random

    from models import artifact

    with (shared / "dga_train.csv").open() as fh:
        names = [row["domain"] for row in csv.DictReader(fh)]
    random.Random(seed).shuffle(names)
    model, _ = artifact.load()
    candidates = names[:4000]
    scores = model.score_batch(candidates)
    return [name for name, s in zip(candidates, scores, strict=True) if s >= 0.9999][:n]


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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_the_loop_detects_dga_traffic_and_blocks_it_in_envoy(
    loop_rig: LoopRig, shared_data: Path, tmp_path: Path
) -> None:
    """Benign traffic, then DGA queries through Envoy; the worker's verdicts come back
    through Redis and the feed, and further queries are answered by the filter."""
    dga = confident_dga_names(shared_data, 5)
    assert len(dga) == 5
    worker = WorkerProcess(loop_rig, tmp_path)
    try:
        benign = popular_names(shared_data, 20)
        deadline = time.monotonic() + 90
        while worker.processed() == 0:  # the worker has joined its group and consumes
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
            loop_rig.query(benign[0])
            time.sleep(0.5)
        for name in benign:
            assert loop_rig.query(name).rcode() == dns.rcode.NOERROR
        start = time.monotonic()
        for name in dga:
            loop_rig.query(name)  # the first query for each goes through: nothing is known yet
        blocked: dict[str, float] = {}
        while len(blocked) < len(dga):
            assert time.monotonic() - start < 30, f"not blocked in 30 s: {set(dga) - set(blocked)}"
            for name in dga:
                if name not in blocked and loop_rig.query(name).rcode() == dns.rcode.NXDOMAIN:
                    blocked[name] = time.monotonic() - start
            time.sleep(0.02)
        # Each Envoy worker's VM takes the new policy on its own next tick: a
        # connection served by the other worker may still be a tick behind.
        loop_rig.wait_version(loop_rig.policy_version())
        counts = {name: sum(n == name for _, n, _ in loop_rig.upstream.received) for name in dga}
        for name in dga:  # later queries, subdomains too, never reach the resolver
            assert loop_rig.query(name).rcode() == dns.rcode.NXDOMAIN
            assert loop_rig.query("mail." + name).rcode() == dns.rcode.NXDOMAIN
        assert counts == {
            name: sum(n == name for _, n, _ in loop_rig.upstream.received) for name in dga
        }
        assert not any(
            n.startswith("mail.") and n[5:] in dga for _, n, _ in loop_rig.upstream.received
        )
        assert loop_rig.query(benign[3]).rcode() == dns.rcode.NOERROR
        alerts = records_by_name(
            loop_rig.bootstrap,
            worker.alerts,
            set(dga),
            lambda a: (a.get("query") or {}).get("hostname"),
        )
        assert set(alerts) == set(dga)
        for alert, *_ in alerts.values():
            assert alert["class_uid"] == 4003
            assert alert["disposition"] == "Blocked"
            assert alert["unmapped"]["dnsguard"]["detector"] == "dga"
    finally:
        worker.stop()
