"""DNS over TCP through real Envoy with the native module (``libdnsguard_native.so``)
as the network filter before ``tcp_proxy``, in front of the test resolver, with
the collector, Kafka, the feed and Redis of the loop rig.

The native filter sees both directions: each event carries the resolver's
response and the latency. A blocked name is answered by the module itself,
written straight to the client between whole responses, and never reaches the
resolver, even pipelined on one connection with names that do.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from streams.sim.resolver import address_for
from streams.stack.envoy import FilterPorts
from streams.stack.processes import EnvoyProcess, free_ports
from tests.e2e.conftest import events_for, run_cleanly
from tests.e2e.loop import LoopRig, uniq

pytestmark = pytest.mark.e2e


def test_native_tcp_answers_pass_and_every_query_is_an_event_with_its_response(
    loop_rig: LoopRig,
) -> None:
    names = {uniq("ntcp") for _ in range(4)}
    missing = uniq("ntnx")
    loop_rig.upstream.nxdomain.add(missing)
    for name in names:
        r = loop_rig.query_native_tcp(name)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[0][0].address == address_for(name)
        assert loop_rig.reached_upstream(name, "tcp")
    assert loop_rig.query_native_tcp(missing).rcode() == dns.rcode.NXDOMAIN
    events = events_for(loop_rig.bootstrap, loop_rig.topic, names | {missing})
    for name in names:
        (ev,) = events[name]
        assert ev["transport"] == "tcp"
        assert ev["action"] == "allowed"
        assert ev.get("response_observed", True) is True  # v1 omits the default
        assert ev["response"]["rcode"] == "NOERROR"
        assert [a["data"] for a in ev["response"]["answers"]] == [address_for(name)]
        assert isinstance(ev["latency_us"], int)
        assert ev["latency_us"] >= 0
        assert ev["node"]["namespace"] == "shop"
        assert ev["node"]["pod"] == "web-7d9f"
        assert ev["client"]["ip"] == "127.0.0.1"
    assert events[missing][0]["response"]["rcode"] == "NXDOMAIN"


def _pipelined(port: int, names: list[str]) -> dict[int, dns.message.Message]:
    """``names`` as queries written back to back on one connection; the answers by id."""
    queries = [dns.message.make_query(n, "A") for n in names]
    wire = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    answers: dict[int, dns.message.Message] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(wire)
        buf = b""
        while len(answers) < len(queries):
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                msg = dns.message.from_wire(buf[2 : 2 + n])
                answers[msg.id] = msg
                buf = buf[2 + n :]
    assert set(answers) == {q.id for q in queries}
    return {i: answers[q.id] for i, q in enumerate(queries)}


def test_a_blocked_name_pipelined_with_others_is_answered_by_the_module_and_never_leaves(
    loop_rig: LoopRig,
) -> None:
    assert loop_rig.ports.native_tcp is not None
    bad, sink, before, after = uniq(), uniq("sink"), uniq("ok"), uniq("ok")
    loop_rig.block(sink, action="sinkhole")
    loop_rig.wait_version(loop_rig.block(bad))
    got = _pipelined(loop_rig.ports.native_tcp, [before, bad, sink, "www." + bad, after])
    assert got[0].rcode() == dns.rcode.NOERROR
    assert got[0].answer[0][0].address == address_for(before)
    for i in (1, 3):
        assert got[i].rcode() == dns.rcode.NXDOMAIN
    assert got[1].question[0].name.to_text(omit_final_dot=True) == bad
    assert got[2].answer[0][0].address == "192.0.2.53"
    assert got[4].answer[0][0].address == address_for(after)
    for name in (bad, "www." + bad, sink):
        assert not loop_rig.reached_upstream(name)
    for name in (before, after):
        assert loop_rig.reached_upstream(name, "tcp")
    stats = loop_rig.envoy.tcp_module_stats()
    assert stats["blocked"] >= 3
    assert stats["feed_rejected"] == 0
    events = events_for(loop_rig.bootstrap, loop_rig.topic, {bad, after})
    assert events[bad][0]["action"] == "blocked"
    assert events[bad][0]["response"]["rcode"] == "NXDOMAIN"
    assert events[bad][0]["policy_version"] >= 1
    assert events[after][0]["action"] == "allowed"


def test_envoy_with_the_native_network_filter_starts_and_shuts_down_cleanly(
    tmp_path: Path,
) -> None:
    admin, dns_tcp, native, up, col = free_ports(5)
    ports = FilterPorts(admin=admin, dns_tcp=dns_tcp, upstream_dns=up, collector=col,
                        native_tcp=native)  # fmt: skip

    def exercise(envoy: EnvoyProcess) -> None:
        q = dns.message.make_query("example.org", "A")
        assert dns.query.tcp(q, "127.0.0.1", port=native, timeout=5).rcode() == dns.rcode.NOERROR
        # a client that leaves mid-message: its half query is dropped with the connection
        with socket.create_connection(("127.0.0.1", native), timeout=5) as s:
            s.sendall(b"\x00\x30\x12\x34\x01\x00")
        stats = envoy.tcp_module_stats()
        assert (stats["queries"], stats["parse_errors"]) == (1, 0)

    run_cleanly(tmp_path, ports, exercise)
