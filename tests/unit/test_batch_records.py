"""Batch records, the events topic's record format: the collector groups a
request's events by client (bounded records), and the worker reads them back,
one bad event costing only itself; single v1 records still read."""

from __future__ import annotations

import json

from streams.ingest import collector
from streams.ingest.collector import batch_records
from streams.ingest.decode import decode_record
from tests.unit.test_collector import event


def pairs(*names_pods: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(f"shop/{pod}".encode(), json.dumps(event(n, pod)).encode()) for n, pod in names_pods]


def names(value: bytes) -> list[str]:
    return [e["query"]["name"] for e in json.loads(value)]


def test_one_record_per_client_in_order() -> None:
    records = batch_records(pairs(("a.com", "p1"), ("b.com", "p2"), ("c.com", "p1")))
    assert [k for k, _ in records] == [b"shop/p1", b"shop/p2"]
    assert [names(v) for _, v in records] == [["a.com", "c.com"], ["b.com"]]


def test_records_are_bounded_in_events_and_bytes() -> None:
    many = pairs(*[(f"n{i}.com", "p1") for i in range(collector.RECORD_MAX_EVENTS * 2 + 1)])
    records = batch_records(many)
    assert [len(json.loads(v)) for _, v in records] == [collector.RECORD_MAX_EVENTS] * 2 + [1]
    big = pairs(*[(f"{'x' * 60}.{'y' * 60}.{'z' * 60}{i}.com", "p1") for i in range(4000)])
    for _, v in batch_records(big):
        assert len(v) <= collector.RECORD_MAX_BYTES
    assert sum(len(json.loads(v)) for _, v in batch_records(big)) == 4000


def test_decode_record_reads_batches_and_single_events() -> None:
    ((_, value),) = batch_records(pairs(("a.com", "p1"), ("b.com", "p1")))
    events, rejected = decode_record(value)
    assert [e.qname for e in events] == ["a.com", "b.com"]
    assert not rejected
    assert {e.client for e in events} == {"shop/p1"}
    events, rejected = decode_record(json.dumps(event("c.com")).encode())
    assert [e.qname for e in events] == ["c.com"]
    assert not rejected


def test_a_bad_event_costs_only_itself() -> None:
    good = [event("a.com"), event("b.com")]
    for bad in ({"v": 1, "ts": "nope"}, {"v": 1}, 7, [1, 2]):
        events, rejected = decode_record(json.dumps([good[0], bad, good[1]]).encode())
        assert [e.qname for e in events] == ["a.com", "b.com"], bad
        assert len(rejected) == 1
        assert json.loads(rejected[0][0]) == bad


def test_records_that_are_not_batches_are_rejected_whole() -> None:
    for raw in (b"[]", b"[1,", b"\xff\xfe", b"{not json", b'"a string"'):
        events, rejected = decode_record(raw)
        assert events == [], raw
        assert len(rejected) == 1, raw
        assert rejected[0][0] == raw
