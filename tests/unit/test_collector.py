"""The collector's HTTP contract, with an in-memory sink (the Kafka sink has its own tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.collector import Collector, Record, SinkUnavailable
from streams.settings import CollectorSettings, Secret

pytestmark = pytest.mark.unit


def event(name: str = "a.example.com", pod: str = "web-1") -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-11-25T12:00:00.000001Z",
        "node": {
            "id": "n",
            "cluster": "c",
            "namespace": "shop",
            "workload": "web",
            "pod": pod,
            "service_account": "sa",
        },
        "client": {"ip": "10.0.0.1", "port": 40000},
        "transport": "tcp",
        "query": {
            "id": 7,
            "name": name,
            "type": "A",
            "class": "IN",
            "rd": True,
            "cd": False,
            "do": False,
        },
        "response": {
            "rcode": "NOERROR",
            "aa": False,
            "tc": False,
            "ra": True,
            "ad": False,
            "answers": [],
            "min_ttl": None,
        },
        "latency_us": 120,
        "action": "allowed",
        "policy_version": 0,
    }


class MemorySink:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[Record] = []
        self.dead: list[Record] = []
        self.fail = fail

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send(self, events: Sequence[Record], dead: Sequence[Record]) -> None:
        if self.fail:
            raise SinkUnavailable("down")
        self.events.extend(events)
        self.dead.extend(dead)


SETTINGS = CollectorSettings(token=Secret("s3cret"), max_body_bytes=64 * 1024, max_events=50)
AUTH = {"Authorization": "Bearer s3cret"}


def call(
    sink: MemorySink,
    body: bytes,
    headers: dict[str, str] | None = None,
    settings: CollectorSettings = SETTINGS,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async def run() -> tuple[int, dict[str, Any], dict[str, str]]:
        async with TestClient(TestServer(Collector(settings, sink).app())) as client:
            resp = await client.post(
                "/v1/events", data=body, headers=headers if headers is not None else AUTH
            )
            return resp.status, await resp.json(), dict(resp.headers)

    return asyncio.run(run())


def test_valid_events_are_keyed_by_client_and_invalid_ones_dead_lettered() -> None:
    sink = MemorySink()
    bad = event()
    del bad["query"]["name"]
    body = json.dumps([event("x.com", "web-1"), bad, event("y.com", "web-2"), {"v": 2}]).encode()
    status, reply, _ = call(sink, body)
    assert status == 202
    assert reply == {"accepted": 2, "rejected": 2}
    assert [k for k, _ in sink.events] == [b"shop/web-1", b"shop/web-2"]
    reasons = [json.loads(v)["reason"] for _, v in sink.dead]
    assert any("name" in r for r in reasons)
    assert json.loads(sink.dead[0][1])["event"].startswith("{")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "s3cret"}, 401)],
)
def test_token_is_required(headers: dict[str, str], status: int) -> None:
    sink = MemorySink()
    got, reply, resp_headers = call(sink, b"[]", headers)
    assert got == status
    assert "token" in reply["error"]
    assert resp_headers.get("WWW-Authenticate") == "Bearer"
    assert sink.events == []


def test_a_body_that_arrives_in_pieces_is_read_whole() -> None:
    sink = MemorySink()
    body = json.dumps([event(f"n{i}.example.com") for i in range(40)]).encode()

    async def dribble():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]
            await asyncio.sleep(0.002)

    async def run() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(Collector(SETTINGS, sink).app())) as client:
            resp = await client.post("/v1/events", data=dribble(), headers=AUTH)
            return resp.status, await resp.json()

    assert asyncio.run(run()) == (202, {"accepted": 40, "rejected": 0})


def test_limits_and_shape() -> None:
    assert call(MemorySink(), b'{"v": 1}')[0] == 400
    assert call(MemorySink(), b"not json")[0] == 400
    assert call(MemorySink(), json.dumps([event()] * 51).encode())[0] == 413
    assert call(MemorySink(), b"[" + b" " * (64 * 1024) + b"]")[0] == 413


def test_sink_unavailable_is_503_with_retry_after() -> None:
    status, reply, headers = call(MemorySink(fail=True), json.dumps([event()]).encode())
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "down" in reply["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_arbitrary_bodies_never_cause_a_server_error(body: bytes) -> None:
    sink = MemorySink()
    status, _, _ = call(sink, body)
    assert status in (202, 400, 413)
    for _, value in sink.events:  # anything accepted is a valid event
        assert json.loads(value)["v"] == 1
