"""DNS through real Envoy with the dnsguard filter arrives in Kafka as v2 batch
records (checked against the v2 schema, read here as v1 objects)."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
import urllib.request
import uuid

import dns.message
import dns.query
import dns.rcode
import jsonschema
import pytest

from streams.ingest.events import SCHEMA_PATH
from streams.sim.resolver import address_for
from tests.e2e.conftest import FilterRig, events_for

pytestmark = pytest.mark.e2e

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def uniq(prefix: str = "q") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}.example.com"


def framed(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def read_framed(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    (n,) = struct.unpack("!H", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return body


def test_tcp_queries_become_events_with_answers_and_attribution(rig: FilterRig) -> None:
    a, aaaa, nx = uniq("a-"), uniq("v6-"), "nx-" + uniq()
    port = rig.ports.dns_tcp
    before = rig.envoy.stats()
    r1 = dns.query.tcp(dns.message.make_query(a, "A"), "127.0.0.1", port=port, timeout=5)
    dns.query.tcp(
        dns.message.make_query(aaaa, "AAAA", want_dnssec=True), "127.0.0.1", port=port, timeout=5
    )
    r3 = dns.query.tcp(dns.message.make_query(nx, "A"), "127.0.0.1", port=port, timeout=5)
    assert r1.answer
    assert r3.rcode() == dns.rcode.NXDOMAIN
    got = events_for(rig.bootstrap, rig.topic, {a, aaaa, nx})
    assert set(got) == {a, aaaa, nx}
    ev_a, ev_v6, ev_nx = got[a][0], got[aaaa][0], got[nx][0]
    for ev in (ev_a, ev_v6, ev_nx):
        jsonschema.validate(ev, SCHEMA)
        assert ev["transport"] == "tcp"
        assert ev["node"] == {
            "id": "sidecar~10.1.0.11~web-7d9f.shop~shop.svc.cluster.local",
            "cluster": "web.shop",
            "namespace": "shop",
            "workload": "web",
            "pod": "web-7d9f",
            "service_account": "web-sa",
        }
        assert ev["client"]["ip"] == "127.0.0.1"
        assert ev["client"]["port"] > 0
        assert ev["latency_us"] is not None
        assert ev["latency_us"] >= 0
    assert ev_a["query"] == {
        "id": r1.id,
        "name": a,
        "type": "A",
        "class": "IN",
        "rd": True,
        "cd": False,
        "do": False,
    }
    assert ev_a["response"]["rcode"] == "NOERROR"
    assert ev_a["response"]["answers"] == [
        {"name": a, "type": "A", "ttl": 300, "data": address_for(a)}
    ]
    assert ev_a["response"]["min_ttl"] == 300
    assert ev_v6["query"]["do"] is True
    assert ev_v6["response"]["answers"][0]["data"] == "2001:db8::53"
    assert ev_nx["response"]["rcode"] == "NXDOMAIN"
    assert ev_nx["response"]["answers"] == []
    assert ev_nx["response"]["min_ttl"] is None
    # Envoy's counters: queries and responses are added on the filter's timer
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = rig.envoy.stats()
        counted = [now.get(k, 0) - before.get(k, 0) for k in ("queries", "responses")]
        if min(counted) >= 3:
            break
        time.sleep(0.1)
    assert min(counted) >= 3, counted


def test_split_reads_and_pipelined_out_of_order_answers(rig: FilterRig) -> None:
    slow, fast, split = "slow-" + uniq(), uniq("fast-"), uniq("split-")
    q_slow = dns.message.make_query(slow, "A")
    q_fast = dns.message.make_query(fast, "A")
    q_split = dns.message.make_query(split, "A")
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # two queries in one write; the first is answered last
        s.sendall(framed(q_slow.to_wire()) + framed(q_fast.to_wire()))
        first = dns.message.from_wire(read_framed(s))
        second = dns.message.from_wire(read_framed(s))
        assert (first.id, second.id) == (q_fast.id, q_slow.id)
        # one query dribbled a few bytes per write
        wire = framed(q_split.to_wire())
        for i in range(0, len(wire), 3):
            s.sendall(wire[i : i + 3])
            time.sleep(0.01)
        assert dns.message.from_wire(read_framed(s)).id == q_split.id
    got = events_for(rig.bootstrap, rig.topic, {slow, fast, split})
    assert set(got) == {slow, fast, split}
    for name, q in ((slow, q_slow), (fast, q_fast), (split, q_split)):
        (ev,) = got[name]
        assert ev["query"]["id"] == q.id
        assert ev["response"]["answers"][0]["data"] == address_for(name)
    assert got[slow][0]["latency_us"] >= 250_000  # paired with its own (late) answer


def test_malformed_messages_pass_through_and_are_counted(rig: FilterRig) -> None:
    before = rig.envoy.stats().get("parse_errors", 0)
    garbage = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"  # self pointer
    )
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        s.sendall(framed(garbage))
        reply = read_framed(s)  # the upstream saw it and answered FORMERR: nothing was dropped
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0x0F == 1
    deadline = time.monotonic() + 5
    while rig.envoy.stats().get("parse_errors", 0) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rig.envoy.stats()["parse_errors"] > before


def test_doh_post_and_get(rig: FilterRig) -> None:
    post, get = uniq("post-"), uniq("get-")
    url = f"http://127.0.0.1:{rig.ports.doh}/dns-query"
    req = urllib.request.Request(
        url,
        data=dns.message.make_query(post, "A").to_wire(),
        headers={"content-type": "application/dns-message"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert dns.message.from_wire(r.read()).answer
    wire = dns.message.make_query(get, "AAAA").to_wire()
    enc = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    with urllib.request.urlopen(f"{url}?dns={enc}", timeout=5) as r:
        assert dns.message.from_wire(r.read()).answer
    got = events_for(rig.bootstrap, rig.topic, {post, get})
    assert got[post][0]["transport"] == "doh"
    assert got[post][0]["response"]["answers"][0]["data"] == address_for(post)
    assert got[get][0]["query"]["type"] == "AAAA"
    assert got[get][0]["response"]["answers"][0]["data"] == "2001:db8::53"
    for evs in got.values():
        jsonschema.validate(evs[0], SCHEMA)


def test_unanswered_query_becomes_an_event_after_the_timeout(rig: FilterRig) -> None:
    name = "noanswer-" + uniq()
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        s.sendall(framed(dns.message.make_query(name, "A").to_wire()))
        got = events_for(rig.bootstrap, rig.topic, {name}, timeout=15)  # connection still open
    (ev,) = got[name]
    assert ev["response"] is None
    assert ev["latency_us"] is None
    jsonschema.validate(ev, SCHEMA)


@pytest.mark.parametrize("path", ["wasm", "native"])
def test_dot_terminated_by_envoy_carries_the_client_certificate_identity(
    rig: FilterRig, path: str
) -> None:
    """The Wasm filter and the native module's network filter alike, behind Envoy's TLS."""
    import ssl

    from tests.e2e.conftest import CLIENT_SPIFFE

    port = rig.ports.dot if path == "wasm" else rig.ports.native_dot
    assert port is not None
    name = uniq(f"dot-{path}-")
    ctx = ssl.create_default_context(cafile=str(rig.tls.ca))
    ctx.load_cert_chain(str(rig.tls.client_cert), str(rig.tls.client_key))
    q = dns.message.make_query(name, "A")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(framed(q.to_wire()))
        reply = dns.message.from_wire(read_framed(s))
    assert reply.id == q.id
    assert reply.answer
    (ev,) = events_for(rig.bootstrap, rig.topic, {name})[name]
    jsonschema.validate(ev, SCHEMA)
    assert ev["transport"] == "dot"
    assert ev["client"]["peer"] == CLIENT_SPIFFE
    assert ev["response"]["answers"][0]["data"] == address_for(name)


def test_queries_pending_when_the_connection_closes_become_events_at_once(rig: FilterRig) -> None:
    name = "noanswer-" + uniq("closed-")
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        s.sendall(framed(dns.message.make_query(name, "A").to_wire()))
        time.sleep(0.2)  # let the filter see the query before the close
    t0 = time.monotonic()
    got = events_for(rig.bootstrap, rig.topic, {name}, timeout=10)
    # emitted on close, well before the rig's 5 s unanswered-query timeout
    assert time.monotonic() - t0 < 3.0
    (ev,) = got[name]
    assert ev["response"] is None
