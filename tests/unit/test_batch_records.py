"""Batch records, the events topic's record format: the collector turns a
request (v1 array or v2 batch) into one bounded v2 batch per client key, and
the worker reads them back, one bad event costing only itself; v1 arrays and
single v1 records still read."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import pytest

from detectors.events import DnsEvent
from streams.ingest import batch as v2
from streams.ingest import collector
from streams.ingest.collector import Record, records_from_v1
from streams.ingest.decode import decode_record
from streams.sim.workloads import Simulator
from tests.unit.test_collector import event

pytestmark = pytest.mark.unit


def records(*events: dict[str, Any]) -> list[Record]:
    out, dead = records_from_v1([json.dumps(e).encode() for e in events])
    assert dead == []
    return out


def names(value: bytes) -> list[str]:
    return [e.qname for e in decode_record(value)[0]]


def test_one_record_per_client_in_order() -> None:
    out = records(event("a.com", "p1"), event("b.com", "p2"), event("c.com", "p1"))
    assert [k for k, _ in out] == [b"shop/p1", b"shop/p2"]
    assert [names(v) for _, v in out] == [["a.com", "c.com"], ["b.com"]]
    for _, value in out:  # each record is a v2 batch of one node and one client
        batch = v2.decode_batch_v2(value)
        assert len(batch.clients) == 1


def test_records_are_bounded_in_events_and_bytes() -> None:
    many = records(*[event(f"n{i}.com", "p1") for i in range(collector.RECORD_MAX_EVENTS * 2 + 1)])
    assert [len(decode_record(v)[0]) for _, v in many] == [collector.RECORD_MAX_EVENTS] * 2 + [1]
    big = records(
        *[event(f"{'x' * 60}.{'y' * 60}.{'z' * 58}{i:04d}.com", "p1") for i in range(4000)]
    )
    assert len(big) > 1
    for _, v in big:
        assert len(v) <= collector.RECORD_MAX_BYTES
    assert sum(len(decode_record(v)[0]) for _, v in big) == 4000


def test_v2_records_read_like_the_v1_events_they_came_from() -> None:
    """The conversion loses nothing detectors read: every simulated event,
    through v1 -> v2 record -> detector event, equals v1 -> detector event."""
    evs = list(Simulator().events(time.time() - 120, 60))
    assert len(evs) > 500
    direct = sorted(
        (e for raw in evs for e in decode_record(json.dumps(raw).encode())[0]),
        key=lambda e: (e.client, e.ts, e.qname),
    )
    via_v2 = sorted(
        (e for _, value in records(*evs) for e in decode_record(value)[0]),
        key=lambda e: (e.client, e.ts, e.qname),
    )

    # answers are compared by what detectors read of them (a v2 answer stays
    # the decoded record, a v1 one is a detectors.events.Answer)
    def plain(e: DnsEvent) -> tuple[object, ...]:
        answers = tuple((a.type, a.ttl, a.data) for a in e.answers)
        return (*msgspec.structs.astuple(msgspec.structs.replace(e, answers=())), answers)

    assert [plain(e) for e in via_v2] == [plain(e) for e in direct]
    assert sum(len(e.answers) for e in direct) > 100
    assert any(not e.observed for e in direct) or any(e.rcode == "NXDOMAIN" for e in direct)


def test_decode_record_reads_v2_v1_batches_and_single_events() -> None:
    ((_, value),) = records(event("a.com", "p1"), event("b.com", "p1"))
    assert value.startswith(b'{"v":2,')
    events, rejected = decode_record(value)
    assert [e.qname for e in events] == ["a.com", "b.com"]
    assert not rejected
    assert {e.client for e in events} == {"shop/p1"}
    events, rejected = decode_record(json.dumps([event("a.com"), event("b.com")]).encode())
    assert [e.qname for e in events] == ["a.com", "b.com"]
    assert not rejected
    events, rejected = decode_record(json.dumps(event("c.com")).encode())
    assert [e.qname for e in events] == ["c.com"]
    assert not rejected


def test_a_bad_event_costs_only_itself() -> None:
    good = [event("a.com"), event("b.com")]
    for bad in ({"v": 1, "ts": "nope"}, {"v": 1}, 7, [1, 2]):
        events, rejected = decode_record(json.dumps([good[0], bad, good[1]]).encode())
        assert [e.qname for e in events] == ["a.com", "b.com"], bad
        assert len(rejected) == 1
        assert json.loads(rejected[0].raw) == bad
        assert rejected[0].position == 1


def test_a_bad_event_of_a_v2_record_costs_only_itself() -> None:
    """The worker checks again what the collector checked (a record may come
    from another producer): a bad name or client index rejects that event,
    kept replayable as a batch of its own."""
    ((_, value),) = records(event("a.com", "p1"), event("b.com", "p1"), event("c.com", "p1"))
    doc = json.loads(value)
    doc["events"][1][4] = "bad..name"
    events, rejected = decode_record(json.dumps(doc).encode())
    assert [e.qname for e in events] == ["a.com", "c.com"]
    assert [r.position for r in rejected] == [1]
    assert json.loads(rejected[0].raw)["events"][0][4] == "bad..name"
    doc["events"][1][4] = "b.com"
    doc["events"][2][1] = 3  # a client the batch does not have
    events, rejected = decode_record(json.dumps(doc).encode())
    assert [e.qname for e in events] == ["a.com", "b.com"]
    assert "index 3 of 1 clients" in str(rejected[0].error)


def test_records_that_are_not_batches_are_rejected_whole() -> None:
    for raw in (b"[]", b"[1,", b"\xff\xfe", b"{not json", b'"a string"', b'{"v":2}'):
        events, rejected = decode_record(raw)
        assert events == [], raw
        assert len(rejected) == 1, raw
        assert rejected[0].raw == raw


def test_v2_refuses_what_the_schema_refuses() -> None:
    """Extra array elements and unknown fields are refused, not ignored."""
    ((_, value),) = records(event("a.com", "p1"))
    doc = json.loads(value)
    doc["events"][0].append("extra")
    with pytest.raises(v2.EventError):
        v2.decode_batch_v2(json.dumps(doc).encode())
    doc = json.loads(value)
    doc["extra"] = 1
    with pytest.raises(v2.EventError):
        v2.decode_batch_v2(json.dumps(doc).encode())


def test_the_published_v2_schema_is_the_generated_one() -> None:
    assert json.loads(v2.SCHEMA_V2_PATH.read_text()) == v2.schema()


def test_v2_is_smaller_than_v1() -> None:
    evs = list(Simulator().events(time.time() - 60, 30))
    v1_bytes = sum(len(json.dumps(e, separators=(",", ":"))) for e in evs)
    v2_bytes = sum(len(v) for _, v in records(*evs))
    assert v2_bytes * 3 < v1_bytes, (v1_bytes, v2_bytes)


def test_split_by_client_reindexes_clients() -> None:
    node = msgspec.convert(event()["node"], v2.Node)
    clients = [v2.Client("10.0.0.1"), v2.Client("10.0.0.2"), v2.Client("10.0.0.3")]
    ev = [v2.Event(1, c, "udp", 1, f"n{c}.com", "A", "IN", 1, None, False, None, "allowed", 0)
          for c in (2, 0, 2)]  # fmt: skip
    node.pod = node.workload = ""  # no pod: the client IP is the key
    parts = dict(v2.split_by_client(v2.Batch(node, clients, ev)))
    assert list(parts) == ["10.0.0.3", "10.0.0.1"]
    assert [e.client for e in parts["10.0.0.3"].events] == [0, 0]
    assert [c.ip for c in parts["10.0.0.3"].clients] == ["10.0.0.3"]


def test_v1_to_v2_and_back_is_lossless() -> None:
    """``from_v1`` and ``to_v1`` are inverse on valid v1 events: a v2 batch
    holds everything a v1 event says."""
    from streams.ingest.events import decode_event

    evs = list(Simulator().events(time.time() - 60, 30))[:300]
    for raw in evs:
        raw.setdefault("response_observed", True)
    by_node: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        by_node.setdefault(json.dumps(e["node"]), []).append(e)
    assert len(by_node) > 1
    for group in by_node.values():
        back = v2.to_v1(v2.from_v1([decode_event(json.dumps(e).encode()) for e in group]))
        for e in back:
            e.setdefault("response_observed", True)
        assert back == group


def test_query_names_kept_while_they_recur_are_bounded_and_never_the_bad_ones() -> None:
    """A v2 record's names are canonicalised once while they recur: the table
    is bounded, keeps only names that passed, and a bad name is rejected every
    time it comes."""
    from streams.ingest import decode

    bound = decode._canonical.cache_info().maxsize
    assert bound is not None
    for i in range(3):
        ((_, value),) = records(event(f"n{i}.example.com", "p1"), event("A.Example.COM", "p1"))
        events, rejected = decode_record(value)
        assert [e.qname for e in events] == [f"n{i}.example.com", "a.example.com"]
        assert not rejected
    for i in range(bound + 10):
        decode._canonical(f"m{i}.example.com")
    assert decode._canonical.cache_info().currsize <= bound
    ((_, value),) = records(event("a.com", "p1"), event("b.com", "p1"))
    doc = json.loads(value)
    doc["events"][1][4] = "bad..name"
    for _ in range(2):
        events, rejected = decode_record(json.dumps(doc).encode())
        assert [e.qname for e in events] == ["a.com"]
        assert [r.position for r in rejected] == [1]
    misses = decode._canonical.cache_info().misses
    decode_record(json.dumps(doc).encode())
    assert decode._canonical.cache_info().misses == misses + 1  # the bad name: never kept
