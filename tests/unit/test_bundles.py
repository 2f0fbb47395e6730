"""The collector's bundler: records of many requests bound for one partition
travel as one, in order, and each request is answered with its bundles' fate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import msgspec
import pytest

from streams.ingest import batch as v2
from streams.ingest.bundles import Bundler, Part, Record, bundle_value
from streams.ingest.decode import decode_record

pytestmark = pytest.mark.unit

LINGER = 0.05


def batch(pod: str, *names: str) -> bytes:
    """A sidecar's request as one encoded v2 batch (one pod, one client)."""
    node = {"id": "n", "cluster": "c", "namespace": "shop", "workload": "web", "pod": pod,
            "service_account": "sa"}  # fmt: skip
    events = [[1_764_072_000_000_000 + i, 0, "udp", i, n, "A", "IN", 1, None, False, None,
               "allowed", 0] for i, n in enumerate(names)]  # fmt: skip
    body = {"v": 2, "node": node, "clients": [{"ip": "10.0.0.1"}], "events": events}
    return msgspec.json.encode(v2.decode_batch_v2(json.dumps(body).encode()))


def part(pod: str, *names: str, partition: int = 0) -> Part:
    return Part(partition, 6, f"shop/{pod}".encode(), batch(pod, *names), len(names))


class Written:
    """The sink's send: records in the order they were handed over."""

    def __init__(self, fail_key: bytes | None = None, delay: float = 0.0) -> None:
        self.records: list[Record] = []
        self.fail_key = fail_key
        self.delay = delay

    async def __call__(self, records: Sequence[Record], dead: Sequence[Record]) -> None:
        assert not dead
        self.records.extend(records)
        if self.delay:
            await asyncio.sleep(self.delay)
        if any(k == self.fail_key for k, _ in records):
            raise ConnectionError("the sink refused it")


def names_of(value: bytes) -> list[str]:
    events, rejected = decode_record(value)
    assert not rejected
    return [e.qname for e in events]


def test_requests_bound_for_one_partition_share_a_record_in_arrival_order() -> None:
    async def run() -> tuple[Written, list[float]]:
        sink = Written()
        bundler = Bundler(sink, LINGER, max_events=1000, max_bytes=1 << 20)
        t0 = asyncio.get_running_loop().time()
        answered: list[float] = []

        async def request(p: Part) -> None:
            await bundler.send([p])
            answered.append(asyncio.get_running_loop().time() - t0)
            assert sink.records  # answered only once its record was written

        await asyncio.gather(*(request(part(f"web-{i}", f"q{i}.example.com")) for i in range(30)))
        return sink, answered

    sink, answered = asyncio.run(run())
    assert len(sink.records) == 1
    ((key, value),) = sink.records
    assert key == b"shop/web-0"  # the first part's key: its partition is every part's
    assert value.startswith(b"[")
    assert names_of(value) == [f"q{i}.example.com" for i in range(30)]
    assert len(json.loads(value)) == 30  # one v2 batch per request
    assert min(answered) >= LINGER * 0.9  # it waited for others, up to the linger


def test_a_lone_part_travels_as_a_plain_v2_batch() -> None:
    async def run() -> Written:
        sink = Written()
        await Bundler(sink, LINGER, 1000, 1 << 20).send([part("web-1", "a.example.com")])
        return sink

    ((_, value),) = asyncio.run(run()).records
    assert v2.decode_batch_v2(value).node.pod == "web-1"


def test_partitions_get_their_own_records() -> None:
    async def run() -> Written:
        sink = Written()
        bundler = Bundler(sink, LINGER, 1000, 1 << 20)
        await asyncio.gather(
            bundler.send([part("a", "a1.example.com", partition=0)]),
            bundler.send([part("b", "b1.example.com", partition=1)]),
            bundler.send([part("c", "a2.example.com", partition=0)]),
        )
        return sink

    records = dict(asyncio.run(run()).records)
    assert {k: names_of(v) for k, v in records.items()} == {
        b"shop/a": ["a1.example.com", "a2.example.com"],
        b"shop/b": ["b1.example.com"],
    }


def test_a_full_bundle_is_written_at_once_and_order_is_kept() -> None:
    """Bundles close at max_events without waiting for the linger; a pod's
    events across them keep the order the requests came in."""

    async def run() -> tuple[Written, float]:
        sink = Written()
        bundler = Bundler(sink, 10.0, max_events=4, max_bytes=1 << 20)
        t0 = asyncio.get_running_loop().time()
        await asyncio.gather(
            *(bundler.send([part("web-1", f"q{i}a.example.com", f"q{i}b.example.com")])
              for i in range(6))
        )  # fmt: skip
        return sink, asyncio.get_running_loop().time() - t0

    sink, took = asyncio.run(run())
    assert took < 1.0  # never waited for the 10 s linger
    assert [len(names_of(v)) for _, v in sink.records] == [4, 4, 4]
    assert [n for _, v in sink.records for n in names_of(v)] == [
        f"q{i}{s}.example.com" for i in range(6) for s in "ab"
    ]


def test_a_bundle_stays_within_max_bytes() -> None:
    p = part("web-1", "a.example.com")
    limit = 3 * len(p.value) + 4

    async def run() -> Written:
        sink = Written()
        bundler = Bundler(sink, LINGER, max_events=1000, max_bytes=limit)
        await asyncio.gather(*(bundler.send([p]) for _ in range(7)))
        return sink

    values = [v for _, v in asyncio.run(run()).records]
    assert all(len(v) <= limit for v in values)
    assert sum(len(names_of(v)) for v in values) == 7
    assert len(values) == 3


def test_a_failed_bundle_fails_its_requests_only() -> None:
    async def run() -> list[object]:
        sink = Written(fail_key=b"shop/bad")
        bundler = Bundler(sink, LINGER, 1000, 1 << 20)
        return await asyncio.gather(
            bundler.send([part("bad", "x.example.com", partition=2)]),
            bundler.send([part("other", "y.example.com", partition=2)]),  # same bundle
            bundler.send([part("fine", "z.example.com", partition=3)]),
            bundler.send(  # one part in each of the bundles above
                [
                    part("both", "u.example.com", partition=3),
                    part("b2", "v.example.com", partition=2),
                ]
            ),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    assert [type(r).__name__ for r in results] == [
        "ConnectionError",
        "ConnectionError",
        "NoneType",
        "ConnectionError",  # one of its bundles failed: it is retried whole
    ]


def test_a_request_that_goes_away_does_not_cancel_the_bundle() -> None:
    async def run() -> tuple[Written, bool]:
        sink = Written(delay=0.05)
        bundler = Bundler(sink, LINGER, 1000, 1 << 20)
        gone = asyncio.ensure_future(bundler.send([part("a", "a.example.com")]))
        stays = asyncio.ensure_future(bundler.send([part("b", "b.example.com")]))
        await asyncio.sleep(LINGER / 2)
        gone.cancel()
        await stays
        return sink, gone.cancelled()

    sink, cancelled = asyncio.run(run())
    assert cancelled
    ((_, value),) = sink.records
    assert names_of(value) == ["a.example.com", "b.example.com"]


def test_close_writes_open_bundles() -> None:
    async def run() -> tuple[Written, bool]:
        sink = Written()
        bundler = Bundler(sink, 60.0, 1000, 1 << 20)
        waiting = asyncio.ensure_future(bundler.send([part("a", "a.example.com")]))
        await asyncio.sleep(0)
        await bundler.close()
        await asyncio.sleep(0)
        return sink, waiting.done() and waiting.exception() is None

    sink, answered = asyncio.run(run())
    assert len(sink.records) == 1
    assert answered


def test_a_bundle_with_a_bad_event_costs_only_that_event() -> None:
    """A bundle on the topic that did not come from the collector (a forged
    record): the worker keeps every event that decodes; a rejected event's
    place is its index among all the bundle's events."""
    good = batch("web-1", "a.example.com", "b.example.com")
    bad = json.loads(batch("web-2", "c.example.com", "d.example.com"))
    bad["events"][1][4] = "not a name"
    value = bundle_value([good, json.dumps(bad).encode(), batch("web-3", "e.example.com")])
    events, rejected = decode_record(value)
    assert [e.qname for e in events] == ["a.example.com", "b.example.com", "c.example.com",
                                         "e.example.com"]  # fmt: skip
    assert [r.position for r in rejected] == [3]
    assert [e.client for e in events] == ["shop/web-1", "shop/web-1", "shop/web-2", "shop/web-3"]


def test_a_bundle_item_the_types_refuse_is_rejected_whole_by_its_place() -> None:
    first = batch("web-1", "a.example.com", "b.example.com")
    second = json.loads(batch("web-2", "c.example.com", "d.example.com"))
    second["events"][1][3] = 70_000  # not a DNS id
    value = bundle_value([first, json.dumps(second).encode(), batch("web-3", "e.example.com")])
    events, rejected = decode_record(value)
    assert [e.qname for e in events] == ["a.example.com", "b.example.com", "e.example.com"]
    assert [r.position for r in rejected] == [1]  # the bundle's second batch
    assert json.loads(rejected[0].raw)["node"]["pod"] == "web-2"


def test_the_worker_checks_each_clients_identity_itself() -> None:
    """The worker reads node fields it does not use (id, cluster, service
    account) as plain strings, and checks the identity it keys state by:
    a pod name that is not a Kubernetes name costs its batch's events."""
    first = batch("web-1", "a.example.com", "b.example.com")
    second = json.loads(batch("web-2", "c.example.com", "d.example.com"))
    second["node"]["pod"] = "Not_A_Pod"
    third = json.loads(batch("web-3", "e.example.com"))
    third["node"]["id"] = "a node id the collector's pattern refuses: \u00e9"
    value = bundle_value([first, json.dumps(second).encode(), json.dumps(third).encode()])
    events, rejected = decode_record(value)
    assert [e.qname for e in events] == ["a.example.com", "b.example.com", "e.example.com"]
    assert [r.position for r in rejected] == [2, 3]
    assert all("node.pod" in str(r.error) for r in rejected)
    # a dead letter is a v2 batch of its event, with its node as it came
    assert json.loads(rejected[0].raw)["node"]["pod"] == "Not_A_Pod"
