"""DNS over UDP through real Envoy: ``udp_proxy`` with the native dnsguard module
(``libdnsguard_native.so``) as its listener filter, in front of the test resolver
over UDP, with the collector, Kafka, the feed and Redis of the loop rig.

What is checked at the resolver is what reached it over UDP: a blocked name
is answered by the module and never arrives there.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from streams.sim.resolver import address_for
from streams.stack.envoy import FilterPorts
from streams.stack.processes import EnvoyProcess, free_ports
from tests.e2e.conftest import events_for, records_by_name, run_cleanly
from tests.e2e.loop import LoopRig, WorkerProcess, dga_burst, popular_names, uniq

pytestmark = pytest.mark.e2e


def test_udp_answers_pass_and_every_query_is_an_attributed_event_on_kafka(
    loop_rig: LoopRig,
) -> None:
    names = {uniq("udp") for _ in range(5)}
    for name in names:
        r = loop_rig.query_udp(name)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[0][0].address == address_for(name)
        assert loop_rig.reached_upstream(name, "udp")
    aaaa = uniq("udp6")
    assert loop_rig.query_udp(aaaa, "AAAA").rcode() == dns.rcode.NOERROR
    events = events_for(loop_rig.bootstrap, loop_rig.topic, names | {aaaa})
    for name in names:
        (ev,) = events[name]
        assert ev["transport"] == "udp"
        assert ev["action"] == "allowed"
        # the module sees queries only: the response is marked as not observed
        assert ev["response"] is None
        assert ev["response_observed"] is False
        assert ev["latency_us"] is None
        assert ev["node"]["namespace"] == "shop"
        assert ev["node"]["pod"] == "web-7d9f"
        assert ev["node"]["workload"] == "web"
        assert ev["client"]["ip"] == "127.0.0.1"
        assert ev["query"]["type"] == "A"
        assert ev["query"]["rd"] is True
    assert events[aaaa][0]["query"]["type"] == "AAAA"
    # the shipping thread counts a batch as sent once the collector's reply is
    # in, which can come after the events are readable on Kafka
    deadline = time.monotonic() + 15
    stats = loop_rig.envoy.module_stats()
    while stats["events_sent"] < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
        stats = loop_rig.envoy.module_stats()
    assert stats["queries"] >= 6
    assert stats["events_sent"] >= 6


def test_a_blocked_name_is_answered_by_the_module_and_never_reaches_the_resolver(
    loop_rig: LoopRig,
) -> None:
    bad, sink, refused, benign = uniq(), uniq("sink"), uniq("ref"), uniq("ok")
    loop_rig.block(sink, action="sinkhole")
    loop_rig.block(refused, action="refused")
    loop_rig.wait_version(loop_rig.block(bad))
    for name in (bad, "www." + bad):
        r = loop_rig.query_udp(name)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert r.question[0].name.to_text(omit_final_dot=True) == name
        assert not loop_rig.reached_upstream(name)
    r = loop_rig.query_udp(sink)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[0][0].address == "192.0.2.53"
    assert loop_rig.query_udp(refused).rcode() == dns.rcode.REFUSED
    for name in (sink, refused):
        assert not loop_rig.reached_upstream(name)
    assert loop_rig.query_udp(benign).rcode() == dns.rcode.NOERROR
    assert loop_rig.reached_upstream(benign, "udp")
    stats = loop_rig.envoy.module_stats()
    assert stats["blocked"] >= 4
    assert stats["feed_rejected"] == 0
    assert stats["policy_rules"] >= 3
    events = events_for(loop_rig.bootstrap, loop_rig.topic, {bad, benign})
    assert events[bad][0]["action"] == "blocked"
    assert events[bad][0]["policy_version"] >= 1
    assert events[bad][0]["transport"] == "udp"
    assert events[benign][0]["action"] == "allowed"


def test_udp_scopes_follow_the_node_namespace(loop_rig: LoopRig) -> None:
    other_ns, own_ns = uniq("ons"), uniq("own")
    loop_rig.block(other_ns, scope="ns:payments")
    loop_rig.wait_version(loop_rig.block(own_ns, scope="ns:shop"))
    assert loop_rig.query_udp(own_ns).rcode() == dns.rcode.NXDOMAIN
    assert loop_rig.query_udp(other_ns).rcode() == dns.rcode.NOERROR
    assert loop_rig.reached_upstream(other_ns, "udp")


def test_malformed_datagrams_pass_through_and_are_counted(loop_rig: LoopRig) -> None:
    assert loop_rig.ports.dns_udp is not None
    before = loop_rig.envoy.module_stats()["parse_errors"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        # a header claiming one question, then garbage: the resolver answers FORMERR
        garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff"
        s.sendto(garbage, ("127.0.0.1", loop_rig.ports.dns_udp))
        reply, _ = s.recvfrom(4096)
    assert reply[:2] == b"\x12\x34"  # the resolver's reply came back through udp_proxy
    assert reply[3] & 0x0F == 1  # FORMERR
    deadline = time.monotonic() + 5
    while loop_rig.envoy.module_stats()["parse_errors"] <= before:
        assert time.monotonic() < deadline, loop_rig.envoy.module_stats()
        time.sleep(0.05)


def test_udp_enforcement_is_fail_static_when_the_feed_is_gone(loop_rig: LoopRig) -> None:
    bad = uniq()
    loop_rig.wait_version(loop_rig.block(bad))
    loop_rig.feed.stop()
    try:
        before = loop_rig.envoy.module_stats()["feed_errors"]
        deadline = time.monotonic() + 10
        while loop_rig.envoy.module_stats()["feed_errors"] <= before:
            assert time.monotonic() < deadline, "the module never noticed the feed was gone"
            time.sleep(0.1)
        assert loop_rig.query_udp(bad).rcode() == dns.rcode.NXDOMAIN
        assert not loop_rig.reached_upstream(bad)
        ok = uniq("ok")
        assert loop_rig.query_udp(ok).rcode() == dns.rcode.NOERROR
        assert loop_rig.envoy.module_stats()["feed_version"] >= 1
    finally:
        loop_rig.feed.start()
    loop_rig.wait_version(loop_rig.block(uniq()), timeout=20)


def test_a_udp_pod_walking_its_dga_is_named_infected(
    loop_rig: LoopRig, shared_data: Path, tmp_path: Path
) -> None:
    """UDP events carry no response, so no NXDOMAIN is seen: the worker still
    names the pod from the shape of the names it asked for that nobody else did
    (random-character DGA names in a burst), and says the outcome was not seen."""
    burst = dga_burst(shared_data, 20, seed=11)
    loop_rig.upstream.nxdomain.update(burst)
    worker = WorkerProcess(loop_rig, tmp_path)
    try:
        benign = popular_names(shared_data, 10)
        deadline = time.monotonic() + 90
        while worker.processed() == 0:
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
            loop_rig.query_udp(benign[0])
            time.sleep(0.5)
        for name in benign:
            loop_rig.query_udp(name)
        for name in burst:
            assert loop_rig.query_udp(name).rcode() == dns.rcode.NXDOMAIN
            time.sleep(0.1)
        alerts = records_by_name(
            loop_rig.bootstrap,
            worker.alerts,
            {"infected_client"},
            lambda a: a["unmapped"]["dnsguard"]["detector"],
            timeout=40,
        )
        alert = alerts["infected_client"][-1]
        text = json.dumps(alert)
        assert "shop/web-7d9f" in text
        assert "not observed" in text
    finally:
        worker.stop()


def test_envoy_with_the_module_starts_and_shuts_down_cleanly(tmp_path: Path) -> None:
    admin, dns_tcp, dns_udp, up, col = free_ports(5)
    ports = FilterPorts(admin=admin, dns_tcp=dns_tcp, upstream_dns=up, collector=col,
                        dns_udp=dns_udp)  # fmt: skip

    def exercise(envoy: EnvoyProcess) -> None:
        q = dns.message.make_query("example.org", "A")
        assert dns.query.udp(q, "127.0.0.1", port=dns_udp, timeout=5).rcode() == dns.rcode.NOERROR
        assert envoy.module_stats()["queries"] == 1

    run_cleanly(tmp_path, ports, exercise)
