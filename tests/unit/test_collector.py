"""The collector's HTTP contract, with an in-memory sink (the Kafka sink has its own tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.batch import decode_batch_v2
from streams.ingest.collector import Collector, Record, SinkUnavailable
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
    def __init__(self, fail: bool = False, partitions: int | None = None) -> None:
        self.events: list[Record] = []
        self.dead: list[Record] = []
        self.fail = fail
        self.parts = partitions

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def partitions(self) -> int | None:
        return self.parts

    async def send(self, events: Sequence[Record], dead: Sequence[Record]) -> None:
        if self.fail:
            raise SinkUnavailable("down")
        self.events.extend(events)
        self.dead.extend(dead)


TOKEN = "collector-s3cret-0123"
SETTINGS = CollectorSettings(token=Secret(TOKEN), max_body_bytes=64 * 1024, max_events=50)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": TOKEN}, 401)],
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
    for _, value in sink.events:  # anything accepted is a valid v2 batch
        decode_batch_v2(value)


def test_a_deeply_nested_or_broken_event_costs_only_itself() -> None:
    """A batch is never answered 500 and its valid events are never lost: an
    event nested too deeply for the fast decoder, or with invalid UTF-8, is
    dead-lettered alone."""
    sink = MemorySink()
    settings = CollectorSettings(token=Secret(TOKEN), max_body_bytes=4 << 20, max_events=50)
    good1, good2 = json.dumps(event("x.com", "web-1")), json.dumps(event("y.com", "web-2"))
    deep = "[" * 100_000 + "]" * 100_000
    bad_utf8 = json.dumps(event("NAME")).replace("NAME", "a\\udc80.com")
    body = b"[" + b",".join([good1.encode(), deep.encode(), good2.encode(),
                             json.dumps(event("NAME")).encode().replace(b"NAME", b"a\xff.com"),
                             bad_utf8.encode(), b'{"nested": ' + deep.encode() + b"}"]) + b"]"  # fmt: skip
    status, reply, _ = call(sink, body, settings=settings)
    assert status == 202
    assert reply == {"accepted": 2, "rejected": 4}
    assert [k for k, _ in sink.events] == [b"shop/web-1", b"shop/web-2"]
    reasons = [json.loads(v)["reason"] for _, v in sink.dead]
    assert any("UTF-8" in r for r in reasons)
    assert any("surrogate" in r for r in reasons)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        (("query", "name"), "zz\n+\td\t*\ts\tnxdomain\t0\tgoogle.com", "U+000A"),
        (("query", "name"), "a b.example.com", "U+0020"),
        (("query", "name"), "nul\x00.example.com", "U+0000"),
        (("query", "name"), "a" * 64 + ".com", "64 octets"),
        (("query", "name"), ("a" * 60 + ".") * 5 + "com", "octets"),
        (("query", "name"), "a..b.com", "empty label"),
        (("query", "name"), "caf\u00e9.fr", "U+00E9"),
        (("node", "namespace"), "shop\n", "namespace"),
        (("node", "namespace"), "Shop", "namespace"),
        (("node", "namespace"), "sh\top", "namespace"),
        (("node", "pod"), "web/1", "pod"),
        (("client", "ip"), "10.0.0.1:80", "ip"),
        (("client", "ip"), "999.0.0.1", "ip"),
    ],
)
def test_events_with_invalid_names_or_identities_are_dead_lettered_with_the_reason(
    field: tuple[str, str], value: str, why: str
) -> None:
    sink = MemorySink()
    bad = event()
    bad[field[0]][field[1]] = value
    status, reply, _ = call(sink, json.dumps([bad, event("ok.example.com")]).encode())
    assert (status, reply) == (202, {"accepted": 1, "rejected": 1})
    assert why in json.loads(sink.dead[0][1])["reason"]


def test_names_in_any_valid_presentation_form_are_accepted() -> None:
    sink = MemorySink()
    names = ["WWW.Example.COM.", "a\\032b.example.com", "_dmarc.example.com", "*.example.com",
             "a+b/c=.tunnel.example.com", "xn--80ak6aa92e.com", "."]  # fmt: skip
    status, reply, _ = call(sink, json.dumps([event(n) for n in names]).encode())
    assert (status, reply) == (202, {"accepted": len(names), "rejected": 0})


def test_a_namespace_token_speaks_only_for_its_namespace() -> None:
    shop_token = "shop-token-0123456789"
    settings = CollectorSettings(token=Secret(TOKEN),
                                 namespace_tokens=(("shop", Secret(shop_token)),))  # fmt: skip
    other = event("x.com")
    other["node"]["namespace"] = "payments"
    body = json.dumps([event("a.com"), other]).encode()
    sink = MemorySink()
    status, reply, _ = call(sink, body, {"Authorization": f"Bearer {shop_token}"}, settings)
    assert (status, reply) == (202, {"accepted": 1, "rejected": 1})
    assert [k for k, _ in sink.events] == [b"shop/web-1"]
    assert "may only send events of namespace 'shop'" in json.loads(sink.dead[0][1])["reason"]
    # the collector token speaks for every namespace
    sink = MemorySink()
    assert call(sink, body, AUTH, settings)[1] == {"accepted": 2, "rejected": 0}


def test_auth_is_on_by_default_and_insecure_mode_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    from streams.errors import ConfigError
    from streams.settings import load_collector_settings

    for env in ({}, {"DNSGUARD_COLLECTOR_TOKEN": ""}, {"DNSGUARD_COLLECTOR_TOKEN": "short"}):
        with pytest.raises(ConfigError, match="COLLECTOR_TOKEN"):
            load_collector_settings(env)
    insecure = load_collector_settings({"DNSGUARD_INSECURE": "true"})
    sink = MemorySink()

    async def run() -> tuple[int, str]:
        async with TestClient(TestServer(Collector(insecure, sink).app())) as client:
            resp = await client.post("/v1/events", data=json.dumps([event()]).encode())
            return resp.status, await (await client.get("/metrics")).text()

    status, metrics = asyncio.run(run())
    assert status == 202
    assert "dnsguard_insecure_mode 1.0" in metrics
    assert "DNSGUARD_INSECURE=true" in caplog.text


def test_namespace_tokens_come_from_a_folder(tmp_path: Any) -> None:
    from streams.errors import ConfigError
    from streams.settings import load_collector_settings

    (tmp_path / "shop").write_text("shop-token-0123456789\n")
    (tmp_path / "..data").mkdir()  # what a mounted Secret also holds
    s = load_collector_settings({"DNSGUARD_COLLECTOR_NAMESPACE_TOKENS_DIR": str(tmp_path)})
    assert [(ns, t.reveal()) for ns, t in s.namespace_tokens] == [("shop", "shop-token-0123456789")]
    (tmp_path / "Not_A_Namespace").write_text("x" * 20)
    with pytest.raises(ConfigError, match="not a namespace name"):
        load_collector_settings({"DNSGUARD_COLLECTOR_NAMESPACE_TOKENS_DIR": str(tmp_path)})


def v2_body(*names_ips: tuple[str, str], namespace: str = "shop", pod: str = "") -> dict[str, Any]:
    """A v2 batch of a node without a pod (a node-local DNS proxy): keyed by client IP."""
    ips = list(dict.fromkeys(ip for _, ip in names_ips))
    node = {**event()["node"], "namespace": namespace, "pod": pod, "workload": ""}
    events = [
        [1_764_072_000_000_001 + i, ips.index(ip), "udp", i, name, "A", "IN", 1, None, False,
         None, "allowed", 0]
        for i, (name, ip) in enumerate(names_ips)
    ]  # fmt: skip
    return {"v": 2, "node": node, "clients": [{"ip": ip} for ip in ips], "events": events}


def test_a_v2_batch_is_split_by_client_key() -> None:
    sink = MemorySink()
    body = v2_body(("a.com", "10.0.0.1"), ("b.com", "10.0.0.2"), ("c.com", "10.0.0.1"))
    status, reply, _ = call(sink, json.dumps(body).encode())
    assert (status, reply) == (202, {"accepted": 3, "rejected": 0})
    assert [k for k, _ in sink.events] == [b"10.0.0.1", b"10.0.0.2"]
    first = decode_batch_v2(sink.events[0][1])
    assert [e.name for e in first.events] == ["a.com", "c.com"]
    assert [c.ip for c in first.clients] == ["10.0.0.1"]
    assert all(e.client == 0 and not e.observed for e in first.events)


def test_a_v2_batch_travels_as_one_record_per_partition_of_its_clients() -> None:
    """A node's request names many clients: with a partitioned topic, the
    clients that Kafka's partitioner puts on one partition share a record,
    keyed by one of them, so the record lands where each of its clients'
    events and state belong; every event arrives once, in order."""
    from aiokafka.partitioner import murmur2

    def partition(key: bytes, n: int) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % n

    ips = [f"10.0.{i // 200}.{i % 200 + 1}" for i in range(150)]
    pairs = [(f"q{i}.example.com", ips[(7 * i) % len(ips)]) for i in range(450)]
    body = json.dumps(v2_body(*pairs)).encode()
    roomy = CollectorSettings(token=Secret(TOKEN), max_body_bytes=1 << 20, max_events=1000)
    per_client = MemorySink()
    assert call(per_client, body, settings=roomy)[0] == 202
    assert len(per_client.events) == len(ips)  # unpartitioned: a record per client key
    sink = MemorySink(partitions=6)
    status, reply, _ = call(sink, body, settings=roomy)
    assert (status, reply) == (202, {"accepted": len(pairs), "rejected": 0})
    assert len(sink.events) <= 6
    seen: list[tuple[str, str]] = []
    for key, value in sink.events:
        batch = decode_batch_v2(value)
        assert {partition(c.ip.encode(), 6) for c in batch.clients} == {partition(key, 6)}
        seen += [(e.name, batch.clients[e.client].ip) for e in batch.events]
    assert sorted(seen) == sorted(pairs)
    for ip in ips[:20]:  # each client's events in the order given
        assert [n for n, i in seen if i == ip] == [n for n, i in pairs if i == ip]


def test_a_bad_v2_event_is_dead_lettered_alone() -> None:
    sink = MemorySink()
    body = v2_body(("a.com", "10.0.0.1"), ("b.com", "10.0.0.1"), ("c.com", "10.0.0.2"),
                   ("d.com", "10.0.0.1"))  # fmt: skip
    body["events"][1][4] = "a b.example.com"  # a name the validator refuses
    body["events"][2][3] = 70_000  # not a DNS id: the types refuse it
    body["events"][3].append("extra")  # more elements than the schema has
    status, reply, _ = call(sink, json.dumps(body).encode())
    assert (status, reply) == (202, {"accepted": 1, "rejected": 3})
    assert [k for k, _ in sink.events] == [b"10.0.0.1"]
    reasons = [json.loads(v)["reason"] for _, v in sink.dead]
    assert any("U+0020" in r for r in reasons), reasons
    assert any("65535" in r for r in reasons), reasons
    # a checked-but-refused event keeps its node and client: it can be replayed
    (refused,) = [json.loads(v) for _, v in sink.dead if "U+0020" in json.loads(v)["reason"]]
    replayable = decode_batch_v2(refused["event"].encode())
    assert [c.ip for c in replayable.clients] == ["10.0.0.1"]


def test_v2_identity_and_namespace_are_checked() -> None:
    shop_token = "shop-token-0123456789"
    settings = CollectorSettings(token=Secret(TOKEN),
                                 namespace_tokens=(("shop", Secret(shop_token)),))  # fmt: skip
    shop_auth = {"Authorization": f"Bearer {shop_token}"}
    foreign = json.dumps(v2_body(("a.com", "10.0.0.1"), namespace="payments")).encode()
    sink = MemorySink()
    assert call(sink, foreign, shop_auth, settings)[:2] == (202, {"accepted": 0, "rejected": 1})
    assert "may only send events of namespace 'shop'" in json.loads(sink.dead[0][1])["reason"]
    assert sink.events == []
    assert call(MemorySink(), foreign, AUTH, settings)[1] == {"accepted": 1, "rejected": 0}
    bad_ip = v2_body(("a.com", "10.0.0.1"), ("b.com", "10.0.0.999"))
    sink = MemorySink()
    assert call(sink, json.dumps(bad_ip).encode())[1] == {"accepted": 1, "rejected": 1}
    assert "10.0.0.999" in json.loads(sink.dead[0][1])["reason"]


def test_v2_frames_that_cannot_be_read_are_refused() -> None:
    good = v2_body(("a.com", "10.0.0.1"))
    for broken in ({**good, "v": 3}, {**good, "clients": []}, {**good, "node": {"id": "n"}},
                   {**good, "extra": 1}, {**good, "events": []}):  # fmt: skip
        status, reply, _ = call(MemorySink(), json.dumps(broken).encode())
        assert status == 400, broken
        assert "v2 batch" in reply["error"]
    many = v2_body(*[(f"n{i}.com", "10.0.0.1") for i in range(51)])
    assert call(MemorySink(), json.dumps(many).encode())[0] == 413


def test_sidecars_requests_share_records_per_partition() -> None:
    """Forty sidecars post at once (one pod each): their records travel in
    bundles, one per partition, keyed by a client of that partition, every
    event once; with bundling off, a record per request."""
    from aiokafka.partitioner import murmur2

    from streams.ingest.decode import decode_record

    def partition(key: bytes, n: int) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % n

    pods = [f"web-{i}" for i in range(40)]
    bodies = [json.dumps([event(f"q{i}-{j}.example.com", pod) for j in range(3)]).encode()
              for i, pod in enumerate(pods)]  # fmt: skip

    def post_all(sink: MemorySink, settings: CollectorSettings) -> list[int]:
        async def run() -> list[int]:
            async with TestClient(TestServer(Collector(settings, sink).app())) as client:
                replies = await asyncio.gather(
                    *(client.post("/v1/events", data=b, headers=AUTH) for b in bodies)
                )
                return [r.status for r in replies]

        return asyncio.run(run())

    roomy = CollectorSettings(token=Secret(TOKEN), max_body_bytes=1 << 20, max_events=1000)
    sink = MemorySink(partitions=6)
    assert post_all(sink, roomy) == [202] * 40
    assert len(sink.events) <= 6
    seen: list[tuple[str, str]] = []
    for key, value in sink.events:
        events, rejected = decode_record(value)
        assert not rejected
        assert {partition(e.client.encode(), 6) for e in events} == {partition(key, 6)}
        seen += [(e.client, e.qname) for e in events]
    assert sorted(seen) == sorted(
        (f"shop/{pod}", f"q{i}-{j}.example.com") for i, pod in enumerate(pods) for j in range(3)
    )
    alone = MemorySink(partitions=6)
    assert post_all(alone, replace(roomy, bundle_ms=0)) == [202] * 40
    assert len(alone.events) == 40
