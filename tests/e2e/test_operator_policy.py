"""Operator policy through real Envoy: ``dnsguard policy apply`` puts a YAML
policy into Redis, the feed carries it to two Envoys (sidecars of namespaces
``payments`` and ``shop``), and the filters enforce it merged with detector
verdicts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.policy.store import write_verdicts
from streams.settings import load_stack_settings
from streams.sim.resolver import Upstream, UpstreamServer
from streams.stack.envoy import FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import free_ports
from streams.stack.services import Redis as RedisService
from streams.stack.services import Stack
from tests.e2e.conftest import TOKEN, EnvoyProcess
from tests.e2e.loop import FEED_KEY, FEED_TOKEN, start_feed

pytestmark = pytest.mark.e2e

POLICY = """\
categories:
  gambling:
    files: [gambling.txt]
scopes:
  - namespace: payments
    mode: default-deny
    action: refused
rules:
  - scope: {namespace: payments}
    suffix: stripe.example.net
    action: allow
    comment: the payment provider
  - category: gambling
    action: nxdomain
  - suffix: partner-cdn.example.net
    action: allow
    comment: a detector must never block the partner CDN
  - suffix: dropbox.example.net
    action: log
    comment: shadow IT
"""


@dataclass
class PolicyRig:
    upstream: Upstream
    envoys: dict[str, tuple[EnvoyProcess, int]]
    redis_url: str
    work: Path

    def query(self, ns: str, name: str) -> int:
        q = dns.message.make_query(name, "A")
        return dns.query.tcp(q, "127.0.0.1", port=self.envoys[ns][1], timeout=5).rcode()

    def dnsguard(self, *args: str) -> str:
        env = dict(os.environ, DNSGUARD_REDIS_URL=self.redis_url)
        out = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout

    def wait_version(self, version: int) -> None:
        deadline = time.monotonic() + 15
        while any(e.stats().get("feed_version", 0) < version for e, _ in self.envoys.values()):
            assert time.monotonic() < deadline, "the policy did not reach the Envoys"
            time.sleep(0.05)
        time.sleep(0.15)  # every worker VM picks it up on its next tick


@pytest.fixture(scope="module")
def policy_rig(wasm_module: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyRig]:
    work = tmp_path_factory.mktemp("oppolicy")
    up, up_doh, col, feed_port, redis_port = free_ports(5)
    redis_stack = Stack(replace(load_stack_settings({}), state_dir=work / "redis", redis_port=redis_port),
                        (RedisService,))  # fmt: skip
    redis_stack.up()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    upstream = Upstream()
    feed = start_feed(feed_port, redis_url, work / "feed.log")
    envoys: dict[str, tuple[EnvoyProcess, int]] = {}
    try:
        with UpstreamServer(upstream, up, up_doh):
            for ns in ("payments", "shop"):
                admin, dns_port = free_ports(2)
                ports = FilterPorts(
                    admin=admin, dns_tcp=dns_port, upstream_dns=up, collector=col, feed=feed_port
                )
                opts = FilterOptions(token=TOKEN, feed_keys=(FEED_KEY,), feed_token=FEED_TOKEN,
                                     metadata={"NAMESPACE": ns, "WORKLOAD_NAME": "api", "NAME": f"api-{ns}"})  # fmt: skip
                (work / ns).mkdir()
                envoys[ns] = (
                    EnvoyProcess(filter_bootstrap(ports, opts), work / ns).start(),
                    dns_port,
                )
            yield PolicyRig(upstream, envoys, redis_url, work)
    finally:
        for e, _ in envoys.values():
            e.stop()
        feed.stop()
        redis_stack.down()


def test_operator_policy_merged_with_detector_verdicts_in_envoy(policy_rig: PolicyRig) -> None:
    rig = policy_rig
    (rig.work / "gambling.txt").write_text(
        "# category list\ncasino.example.net\nbets.example.net\n"
    )
    (rig.work / "policy.yaml").write_text(POLICY)
    now = time.time()
    # a detector verdict on the partner CDN (a false positive) and one on a real bad name
    verdicts = [Verdict("*", n, "suffix", "nxdomain", "dga", 0.99, "t", now, now + 600)
                for n in ("partner-cdn.example.net", "bad-dga.example.net")]  # fmt: skip

    async def seed() -> None:
        client = Redis.from_url(rig.redis_url)
        await write_verdicts(client, verdicts)
        await client.aclose()

    asyncio.run(seed())
    diff = rig.dnsguard("policy", "diff", str(rig.work / "policy.yaml"))
    assert "to add" in diff
    assert "categories: gambling 2 domains" in diff
    applied = rig.dnsguard("policy", "apply", str(rig.work / "policy.yaml"))
    version = int(applied.strip().rsplit(" ", 1)[1])
    rig.wait_version(version)

    # default-deny: payments resolves only what it is allowed
    assert rig.query("payments", "api.stripe.example.net") == dns.rcode.NOERROR
    assert rig.query("payments", "example.org") == dns.rcode.REFUSED
    assert rig.query("shop", "example.org") == dns.rcode.NOERROR
    # a category block applies everywhere (in payments its default-deny answers first: still blocked)
    assert rig.query("shop", "www.casino.example.net") == dns.rcode.NXDOMAIN
    assert rig.query("payments", "bets.example.net") != dns.rcode.NOERROR
    # an operator allow overrides a detector verdict for the same name; other verdicts still block
    assert rig.query("shop", "img.partner-cdn.example.net") == dns.rcode.NOERROR
    assert rig.query("shop", "bad-dga.example.net") == dns.rcode.NXDOMAIN
    # log: resolves, and is counted as marked
    assert rig.query("shop", "files.dropbox.example.net") == dns.rcode.NOERROR
    seen = {n for _, n, _ in rig.upstream.received}
    assert {
        "api.stripe.example.net",
        "img.partner-cdn.example.net",
        "files.dropbox.example.net",
    } <= seen
    assert not {"www.casino.example.net", "bets.example.net", "bad-dga.example.net"} & seen
    assert rig.envoys["shop"][0].stats()["shadowed"] >= 1

    explained = rig.dnsguard(
        "policy", "explain", "img.partner-cdn.example.net", "--namespace", "shop"
    )
    assert "allow (matched on partner-cdn.example.net): operator rule (line 15)" in explained
    explained = rig.dnsguard("policy", "explain", "example.org", "--namespace", "payments")
    assert "refused (matched on .): default-deny namespace payments (line 5)" in explained

    # editing the file and applying again travels as a delta: payments may now reach example.org
    (rig.work / "policy.yaml").write_text(
        POLICY + "  - scope: {namespace: payments}\n    exact: example.org\n    action: allow\n"
    )
    applied = rig.dnsguard("policy", "apply", str(rig.work / "policy.yaml"))
    assert applied.startswith("5 rules")
    assert "1 entries changed" in applied
    rig.wait_version(int(applied.strip().rsplit(" ", 1)[1]))
    assert rig.query("payments", "example.org") == dns.rcode.NOERROR
    assert rig.query("payments", "www.example.org") == dns.rcode.REFUSED  # exact, not the subtree
    assert "no change" in rig.dnsguard("policy", "apply", str(rig.work / "policy.yaml"))
