"""The attacks of the trust-boundary review, replayed on real parts. Each test
fails if its attack works again.

* forged events (a name that carries feed records, names with spaces and NULs,
  a namespace that carries a TAB, tunnel-shaped queries under a popular
  domain) posted to the real collector, through Kafka and a real worker into
  Redis, the real feed server and the filter in a real Envoy: nothing invalid
  reaches Redis, nothing wider than the sender's namespace is blocked, and
  other namespaces resolve as before;
* a forged entry written straight into Redis: the feed leaves it out and the
  filters keep taking policy updates;
* hostile HTTP bodies: the collector never answers 500 and keeps the valid
  events of a batch;
* hostile policy files: refused at once, with the file and line, and
  ``policy explain --file`` works without Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import dns.rcode
import pytest
from redis.asyncio import Redis

from detectors.dnsname import is_canonical
from detectors.names import default_psl
from detectors.verdicts import Verdict
from detectors.zones import Zones
from streams.policy.store import CHANGES, VERDICTS, VERSION, read_verdicts, write_verdicts
from streams.sim.workloads import rfc3339
from streams.stack.processes import free_ports
from tests.e2e.conftest import TOKEN, records_by_name
from tests.e2e.loop import LoopRig, WorkerProcess, uniq

pytestmark = pytest.mark.e2e

FORGED_PARENT = "zz\n+\td\t*\ts\tnxdomain\t0\tgoogle.com"


def v1(name: str, ts: float, namespace: str = "attacker", pod: str = "evil-1",
       qtype: str = "TXT") -> dict:  # fmt: skip
    return {
        "v": 1, "ts": rfc3339(ts),
        "node": {"id": "sidecar~10.9.0.1~evil", "cluster": "c", "namespace": namespace,
                 "workload": "evil", "pod": pod, "service_account": "evil"},
        "client": {"ip": "10.9.0.1", "port": 40000},
        "transport": "tcp",
        "query": {"id": 1, "name": name, "type": qtype, "class": "IN", "rd": True, "cd": False, "do": False},
        "response": {"rcode": "NOERROR", "aa": False, "tc": False, "ra": True, "ad": False,
                     "answers": [], "min_ttl": None},
        "latency_us": 900, "action": "allowed", "policy_version": 0,
    }  # fmt: skip


def post(port: int, body: bytes, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def redis_call(rig: LoopRig, fn):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        client = Redis.from_url(rig.redis_url)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def worker(loop_rig: LoopRig, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    w = WorkerProcess(loop_rig, tmp_path_factory.mktemp("worker"))
    try:
        yield w
    finally:
        w.stop()


def test_forged_events_never_widen_a_block_or_reach_the_feed_unvalidated(
    loop_rig: LoopRig, worker: WorkerProcess
) -> None:
    rig = loop_rig
    if True:  # the worker runs for the module
        now = time.time()
        forged = [v1(f"{uuid.uuid4().hex}.{FORGED_PARENT}", now - 30 + i * 0.5) for i in range(60)]
        forged += [
            v1("a b.example.com", now),
            v1("nul\x00.example.com", now),
            v1("ok.example.com", now, namespace="attacker\t*"),
            v1("ok.example.com", now, namespace="Attacker"),
        ]
        status, reply = post(rig.ports.collector, json.dumps(forged).encode())
        assert (status, reply) == (202, {"accepted": 0, "rejected": len(forged)})
        # valid, but abusive: tunnel-shaped queries under a popular name, and
        # under an internal zone, from one pod of one namespace
        tunnel = [v1(f"{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}.google.com", now - 30 + i * 0.5)
                  for i in range(60)]  # fmt: skip
        tunnel += [v1(f"{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}.svc.cluster.local", now - 30 + i * 0.5)
                   for i in range(60)]  # fmt: skip
        status, reply = post(rig.ports.collector, json.dumps(tunnel).encode())
        assert (status, reply) == (202, {"accepted": len(tunnel), "rejected": 0})
        deadline = time.monotonic() + 90
        stored: dict[str, dict] = {}
        while "ns:attacker|google.com" not in stored:
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            assert time.monotonic() < deadline, (stored, worker.log.read_text()[-3000:])
            time.sleep(0.5)
            stored = redis_call(rig, read_verdicts)
    zones, psl = Zones(), default_psl()
    for key, v in stored.items():
        scope, _, name = key.partition("|")
        assert name, key
        assert is_canonical(name), key
        assert not psl.is_public_suffix(name), key
        assert not zones.internal(name), key
        assert scope != "*", key  # one pod's behaviour never blocks everywhere
        assert scope == "ns:attacker" or "attacker" not in v["reason"], key
    alerts = records_by_name(rig.bootstrap, worker.alerts, {"google.com"},
                             lambda a: a["unmapped"]["dnsguard"].get("name"))  # fmt: skip
    assert (
        "namespace attacker only"
        in alerts["google.com"][0]["unmapped"]["dnsguard"]["verdict"]["reason"]
    )
    # the verdict reaches the filter, which still answers the rig's namespace (shop) normally
    rig.wait_version(rig.policy_version())
    stats = rig.envoy.stats()
    assert stats["feed_rejected"] == 0
    assert stats.get("feed_entries_skipped", 0) == 0
    name = f"www{uuid.uuid4().hex[:6]}.google.com"
    assert rig.query(name).rcode() == dns.rcode.NOERROR
    assert rig.reached_upstream(name)


def test_a_forged_entry_in_redis_stays_out_of_the_feed_and_updates_go_on(
    loop_rig: LoopRig,
) -> None:
    rig = loop_rig
    body = {"scope": "*", "name": FORGED_PARENT, "match": "suffix", "action": "nxdomain",
            "detector": "dga", "score": 1.0, "reason": "forged", "created": 0, "expires": 0}  # fmt: skip

    async def forge(client: Redis) -> int:
        # what a writer that skipped every check would leave behind
        version = int(await client.incr(VERSION))
        key = f"*|{FORGED_PARENT}"
        await client.hset(VERDICTS, key, json.dumps(body))
        await client.xadd(CHANGES, {"version": version, "at": 0, "op": "upsert", "key": key},
                          id=f"{version}-1")  # fmt: skip
        return version

    forged_version = redis_call(rig, forge)
    good = uniq("after")
    now = time.time()
    verdict = Verdict("*", good, "suffix", "nxdomain", "dga", 0.99, "t", now, now + 600)
    _, version = redis_call(rig, lambda c: write_verdicts(c, [verdict]))
    assert version > forged_version
    rig.wait_version(version)  # the filter moved past the forged version
    assert rig.query(good).rcode() == dns.rcode.NXDOMAIN
    assert not rig.reached_upstream(good)
    name = f"mail{uuid.uuid4().hex[:6]}.google.com"
    assert rig.query(name).rcode() == dns.rcode.NOERROR  # the smuggled root rule never applied
    stats = rig.envoy.stats()
    assert stats["feed_rejected"] == 0
    assert stats.get("feed_entries_skipped", 0) == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.feed.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "dnsguard_feed_invalid_entries_total" in metrics
    assert "dnsguard_feed_invalid_entries_total 0.0" not in metrics
    # and the verdict store itself refuses to write such a verdict
    from detectors.verdicts import InvalidVerdict

    with pytest.raises(InvalidVerdict):
        Verdict("*", FORGED_PARENT, "suffix", "nxdomain", "dga", 1.0, "x", 0, 1)
    redis_call(rig, lambda c: c.hdel(VERDICTS, f"*|{FORGED_PARENT}"))


def test_hostile_bodies_never_get_a_500_and_valid_events_survive(loop_rig: LoopRig) -> None:
    rig = loop_rig
    now = time.time()
    good = [v1(f"{uniq('body')}", now, namespace="shop", pod="web-1", qtype="A") for _ in range(2)]
    deep = b"[" * 200_000 + b"]" * 200_000
    body = b"[" + b",".join([json.dumps(good[0]).encode(), deep,
                             json.dumps(v1("x.example.com", now)).encode().replace(b"x.example", b"\xff.example"),
                             json.dumps(good[1]).encode()]) + b"]"  # fmt: skip
    assert post(rig.ports.collector, body) == (202, {"accepted": 2, "rejected": 2})
    names = {e["query"]["name"] for e in good}
    found = records_by_name(rig.bootstrap, rig.topic, names, lambda e: e["query"]["name"])
    assert set(found) == names
    for bad in (b"\x00\xff", b"{" * 100_000, b"[1,", b'"just a string"', b"[" + deep[:1000]):
        status, reply = post(rig.ports.collector, bad)
        assert status == 400, (bad[:20], status)
        assert reply["error"]
    assert post(rig.ports.collector, b"[]", token=None)[0] == 401
    assert post(rig.ports.collector, b"[]", token="wrong-token-0123456789")[0] == 401


def dnsguard(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip


ALIAS_BOMB = (
    "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]"
            for i in range(8)
        ]
    )
    + "\nrules: []\n"
)


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        (ALIAS_BOMB, 2, "aliases"),
        ("rules:\n  - suffix: !!python/object/apply:os.system [id]\n    action: allow\n", 2, "tag"),
        ("rules:\n  - suffix: com\n    action: nxdomain\n", 2, "public suffix"),
        ("rules:\n  - exact: .\n    action: refused\n", 2, "root"),
        (
            "rules:\n  - scope: {namespace: Shop}\n    suffix: evil.com\n    action: nxdomain\n",
            2,
            "namespace",
        ),
        ("rules:\n  - suffix: 'evil.com\tx'\n    action: nxdomain\n", 2, "not a domain name"),
        (
            "scopes:\n" + "  - namespace: payments\n    mode: default-deny\n" * 2,
            4,
            "has a mode already",
        ),
    ],
)
def test_hostile_policy_files_are_refused_at_once_with_file_and_line(
    tmp_path: Path, text: str, line: int, why: str
) -> None:
    (redis_port,) = free_ports(1)  # nothing listens: a refused file never needs Redis
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    started = time.monotonic()
    out = dnsguard("policy", "apply", str(path),
                   env={"DNSGUARD_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})  # fmt: skip
    assert time.monotonic() - started < 15
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"{path}: line {line}" in out.stderr
    assert why in out.stderr


def test_policy_explain_with_a_file_works_without_redis(tmp_path: Path) -> None:
    (redis_port,) = free_ports(1)
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - suffix: casino.example.com\n    action: refused\n")
    out = dnsguard("policy", "explain", "www.casino.example.com", "--namespace", "shop",
                   "--file", str(path), env={"DNSGUARD_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "detector verdicts were not consulted" in out.stdout
    assert "refused (matched on casino.example.com): operator rule (line 2)" in out.stdout


SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
          "summary": ("_sum", "_count")}  # fmt: skip


def metric_names(url: str) -> set[str]:
    """The series an exporter serves: those with samples, and those of every
    family it declares (``# TYPE``), so a labelled counter that has not counted
    yet is there too, as a query of it would find it once it has."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            names.update(name + s for s in SERIES.get(kind, ()) if not name.endswith(s))
        elif line and line[0] != "#":
            names.add(line.split("{")[0].split(" ")[0])
    return names


def test_every_metric_the_dashboard_and_alert_rules_query_is_exported(
    loop_rig: LoopRig, worker: WorkerProcess
) -> None:
    import re

    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "observability"
    rules = yaml.safe_load((deploy / "prometheus-rules.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += re.findall(r'"expr": *"([^"]*)"', (deploy / "grafana-dashboard.json").read_text())
    # dnsguard's own metrics, and the UDP module's as Envoy exports them
    queried = {m for e in exprs
               for m in re.findall(r"\b((?:envoy_dynamicmodulescustom_)?dnsguard_[a-z0-9_]+)", e)}  # fmt: skip
    assert {"dnsguard_insecure_mode", "dnsguard_feed_invalid_entries_total",
            "dnsguard_feed_entries_skipped", "envoy_dynamicmodulescustom_dnsguard_queries",
            "envoy_dynamicmodulescustom_dnsguard_feed_age_s"} <= queried  # fmt: skip
    rig = loop_rig
    deadline = time.monotonic() + 60
    while worker.processed() == 0:  # the worker's counters appear with its first batch
        rig.query(uniq("metrics"))
        assert time.monotonic() < deadline
        time.sleep(0.5)
    exported = (
        metric_names(f"http://127.0.0.1:{rig.ports.collector}/metrics")
        | metric_names(f"http://127.0.0.1:{rig.feed.port}/metrics")
        | metric_names(f"http://127.0.0.1:{worker.web_port}/metrics")
        | metric_names(f"http://127.0.0.1:{rig.ports.admin}/stats/prometheus")
    )
    missing = {m for m in queried if m not in exported}
    assert not missing, sorted(missing)
