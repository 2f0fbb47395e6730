"""The feed server on real Redis: snapshots, deltas, 304 and long polls,
pruning, a trimmed log, auth, the size bound, and Redis away."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.policy.feed import FeedServer
from streams.policy.signing import SigningKey
from streams.policy.signing import verify as verify_signature
from streams.policy.store import CHANGES, prune_expired, write_verdicts
from streams.settings import FeedSettings, Secret
from streams.stack.processes import free_ports

pytestmark = pytest.mark.integration

KEY = SigningKey.parse("k1:" + base64.b64encode(bytes([7]) * 32).decode())
TOKEN = "feed-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def verdict(name: str, ttl: float = 600, scope: str = "*") -> Verdict:
    now = time.time()
    return Verdict(scope, name, "suffix", "nxdomain", "dga", 0.99, "test", now, now + ttl)


def settings(redis_url: str, **kw: Any) -> FeedSettings:
    base = FeedSettings(
        signing_key=KEY,
        token=Secret(TOKEN),
        redis_url=redis_url,
        prune_interval_s=3600,
    )
    return replace(base, **kw)


def check_signature(headers: Any, body: bytes) -> None:
    assert verify_signature(headers["X-Dnsguard-Signature"], body, {"k1": KEY.public_b64}) == "k1"


def run(redis_url: str, body: Callable[[TestClient, Redis], Awaitable[None]], **kw: Any) -> None:
    db_url = (
        redis_url.rsplit("/", 1)[0] + "/7"
    )  # a database of its own: other tests write verdicts too

    async def main() -> None:
        redis = Redis.from_url(db_url)
        await redis.flushdb()
        server = FeedServer(settings(db_url, **kw))
        async with TestClient(TestServer(server.app())) as client:
            try:
                await body(client, redis)
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_snapshot_then_304_then_delta(redis_url: str) -> None:
    async def body(client: TestClient, redis: Redis) -> None:
        _, v1 = await write_verdicts(
            redis, [verdict("a.example.net"), verdict("b.example.net", scope="ns:shop")]
        )
        r = await client.get("/v1/policy?since=0", headers=AUTH)
        snap = await r.read()
        assert r.status == 200
        assert r.headers["ETag"] == f'"{v1}"'
        check_signature(r.headers, snap)
        lines = snap.decode().splitlines()
        assert lines[0].startswith(f"dnsguard-policy/1\tsnapshot\t{v1}\t0\t")
        assert {line[1:] for line in lines[1:] if line.startswith("\t")} == {
            "a.example.net",
            "b.example.net",
        }
        assert sum(line.startswith("@\t") for line in lines) == 2  # global and ns:shop groups
        r = await client.get(f"/v1/policy?since={v1}", headers=AUTH)
        assert r.status == 304
        c = verdict("c.example.net")
        _, v2 = await write_verdicts(redis, [c])
        r = await client.get(f"/v1/policy?since={v1}", headers=AUTH)
        delta = await r.read()
        check_signature(r.headers, delta)
        head, *records = delta.decode().splitlines()
        assert head.startswith(f"dnsguard-policy/1\tdelta\t{v2}\t{v1}\t")
        assert records == [
            "-\td\t*\tc.example.net",
            f"+\td\t*\ts\tnxdomain\t{int(c.expires)}\tc.example.net",
        ]

    run(redis_url, body)


def test_long_poll_answers_as_soon_as_the_policy_changes(redis_url: str) -> None:
    async def body(client: TestClient, redis: Redis) -> None:
        _, v1 = await write_verdicts(redis, [verdict("a.example.net")])
        await asyncio.sleep(0.1)  # the server's watcher has seen v1

        async def later() -> None:
            await asyncio.sleep(0.5)
            await write_verdicts(redis, [verdict("late.example.net")])

        writer = asyncio.create_task(later())
        start = time.monotonic()
        r = await client.get(f"/v1/policy?since={v1}&wait_ms=10000", headers=AUTH)
        took = time.monotonic() - start
        await writer
        assert r.status == 200
        assert "late.example.net" in (await r.text())
        assert 0.4 < took < 2.0, took
        # nothing changes: the poll is held for wait_ms, then 304
        start = time.monotonic()
        r = await client.get(f"/v1/policy?since={v1 + 1}&wait_ms=600", headers=AUTH)
        assert r.status == 304
        assert time.monotonic() - start >= 0.5

    run(redis_url, body)


def test_expired_verdicts_are_pruned_as_logged_deletions(redis_url: str) -> None:
    async def body(client: TestClient, redis: Redis) -> None:
        _, v1 = await write_verdicts(
            redis, [verdict("short.example.net", ttl=0.5), verdict("long.example.net")]
        )
        await asyncio.sleep(0.7)
        removed, v2 = await prune_expired(redis, time.time())
        assert (removed, v2) == (1, v1 + 1)
        r = await client.get(f"/v1/policy?since={v1}", headers=AUTH)
        assert (await r.text()).splitlines()[1:] == ["-\td\t*\tshort.example.net"]

    run(redis_url, body)


def test_a_trimmed_change_log_gets_a_snapshot(redis_url: str) -> None:
    async def body(client: TestClient, redis: Redis) -> None:
        _, v1 = await write_verdicts(redis, [verdict("a.example.net")])
        await write_verdicts(redis, [verdict("b.example.net")])
        await write_verdicts(redis, [verdict("c.example.net")])
        await redis.xtrim(CHANGES, maxlen=1, approximate=False)
        r = await client.get(f"/v1/policy?since={v1}", headers=AUTH)
        text = await r.text()
        assert text.split("\t")[1] == "snapshot"
        assert text.count("\n\t") == 3

    run(redis_url, body)


def test_auth_bad_parameters_and_the_size_bound(redis_url: str) -> None:
    async def body(client: TestClient, redis: Redis) -> None:
        await write_verdicts(redis, [verdict(f"n{i}.example.net") for i in range(100)])
        assert (await client.get("/v1/policy")).status == 401
        assert (
            await client.get("/v1/policy", headers={"Authorization": "Bearer nope"})
        ).status == 401
        assert (await client.get("/v1/policy?since=-1", headers=AUTH)).status == 400
        assert (await client.get("/v1/policy?since=x", headers=AUTH)).status == 400
        r = await client.get("/v1/policy", headers=AUTH)
        assert r.status == 503
        assert "size bound" in await r.text()

    run(redis_url, body, max_bytes=1024)


def test_redis_away_is_503_so_filters_keep_their_policy() -> None:
    (port,) = free_ports(1)

    async def main() -> None:
        server = FeedServer(settings(f"redis://127.0.0.1:{port}/0"))
        async with TestClient(TestServer(server.app())) as client:
            r = await client.get("/v1/policy?since=0", headers=AUTH)
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"

    asyncio.run(main())


def op_entry(name: str, action: str = "nxdomain", scope: str = "*", match: str = "suffix") -> dict:
    return {"origin": "o", "scope": scope, "name": name, "match": match, "action": action,
            "expires": 0.0, "source": "test"}  # fmt: skip


def test_operator_rules_travel_in_snapshots_and_deltas(redis_url: str) -> None:
    from streams.policy.store import write_operator

    async def body(client: TestClient, redis: Redis) -> None:
        rules = {
            "*|casino.example.net|suffix|nxdomain": op_entry("casino.example.net"),
            "ns:pay|.|suffix|refused": op_entry(".", "refused", "ns:pay"),
            "ns:pay|stripe.example.net|suffix|allow": op_entry(
                "stripe.example.net", "allow", "ns:pay"
            ),
        }
        changed, v1 = await write_operator(redis, rules, {"file": "p.yaml"})
        assert changed == 3
        assert (await write_operator(redis, rules, {"file": "p.yaml"})) == (0, v1)  # idempotent
        snap = await (await client.get("/v1/policy?since=0", headers=AUTH)).text()
        assert "@\to\tns:pay\ts\trefused\t0\n\t.\n" in snap
        assert "\tcasino.example.net\n" in snap
        # drop the casino rule, add an exact rule beside the stripe allow
        rules.pop("*|casino.example.net|suffix|nxdomain")
        rules["ns:pay|stripe.example.net|exact|refused"] = op_entry(
            "stripe.example.net", "refused", "ns:pay", "exact"
        )
        _, v2 = await write_operator(redis, rules, {"file": "p.yaml"})
        r = await client.get(f"/v1/policy?since={v1}", headers=AUTH)
        lines = (await r.text()).splitlines()
        assert lines[0].startswith(f"dnsguard-policy/1\tdelta\t{v2}\t{v1}\t")
        assert lines[1:] == [
            "-\to\t*\tcasino.example.net",
            "-\to\tns:pay\tstripe.example.net",
            "+\to\tns:pay\te\trefused\t0\tstripe.example.net",
            "+\to\tns:pay\ts\tallow\t0\tstripe.example.net",
        ]
        # a change bigger than the change log: one reset entry, delta readers get a snapshot
        many = {
            f"*|n{i}.example.net|suffix|nxdomain": op_entry(f"n{i}.example.net") for i in range(50)
        }
        _, _v3 = await write_operator(redis, many, {"file": "p.yaml"}, changelog_max=10)
        assert await redis.xlen(CHANGES) == 1
        r = await client.get(f"/v1/policy?since={v2}", headers=AUTH)
        text = await r.text()
        assert text.split("\t")[1] == "snapshot"
        assert text.count("\n\t") == 50

    run(redis_url, body)


def test_an_empty_store_is_not_modified_for_a_new_filter(redis_url: str) -> None:
    """A fresh deployment: Redis is empty (version 0) and a new filter asks
    since=0. The feed holds the poll and answers 304, not a version-0 snapshot
    the filter would refuse as not newer (and count as a rejected feed), and the
    first verdict ends the wait."""

    async def body(client: TestClient, redis: Redis) -> None:
        started = time.monotonic()
        r = await client.get("/v1/policy?since=0&wait_ms=300", headers=AUTH)
        assert r.status == 304
        assert time.monotonic() - started >= 0.25
        poll = asyncio.create_task(client.get("/v1/policy?since=0&wait_ms=5000", headers=AUTH))
        await asyncio.sleep(0.2)
        await write_verdicts(redis, [verdict("first.example.net")])
        r = await poll
        assert r.status == 200
        assert "first.example.net" in await r.text()

    run(redis_url, body)
