"""A client's detector state as a snapshot: what the worker keeps in its
changelog-backed table so that evidence survives a restart or a rebalance."""

from __future__ import annotations

import json

import pytest

from detectors.events import Answer, DnsEvent
from detectors.infected import InfectedSettings
from detectors.pipeline import Pipeline
from models import artifact
from tests.unit import traffic
from tests.unit.test_cluster_detection import burst, healthy_browsing, run

pytestmark = pytest.mark.unit
A = (Answer("A", 300, "198.51.100.7"),)


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return artifact.load()[0]


def named(pipeline: Pipeline, events: list[DnsEvent]) -> list[str]:
    _findings, alerts, _ = run(pipeline, events)
    return [a.decision.finding.client for a in alerts
            if a.decision.finding.detector == "infected_client"]  # fmt: skip


def test_every_clients_snapshot_survives_json_and_a_new_pipeline(model) -> None:  # type: ignore[no-untyped-def]
    events = healthy_browsing(600, 8, seed=3, typo_rate=0.05)
    events += burst(100, traffic.dga("cryptolocker", 30), "payments/batch-1", "payments")
    events += [DnsEvent(200 + i, "shop/tunnel-1", "shop", f"{'ab' * 20}{i:04d}.t.example.com",
                        "TXT", "NOERROR") for i in range(200)]  # fmt: skip
    first = Pipeline(model)
    run(first, events)
    clients = sorted({e.client for e in events})
    snapshots = {c: first.dump_client(c) for c in clients}
    assert all(s is not None for s in snapshots.values())
    parts = {p for s in snapshots.values() if s for p in s}
    assert {"rate", "storm", "tunnel", "infected", "incidents"} <= parts
    second = Pipeline(model)
    for c, snap in snapshots.items():
        assert snap is not None
        second.load_client(c, json.loads(json.dumps(snap)))
    assert {c: second.dump_client(c) for c in clients} == snapshots


def test_evidence_carries_over_to_the_pipeline_that_takes_the_client(model) -> None:  # type: ignore[no-untyped-def]
    """Half a burst on one worker, the rest on another: the pod is named there
    only if the first half's evidence came along."""
    names = traffic.dga("cryptolocker", 12)
    client = "payments/batch-1"
    before = burst(100, names[:6], client, "payments")
    after = burst(before[-1].ts + 0.3, names[6:], client, "payments")
    first = Pipeline(model)
    assert named(first, before) == []  # not enough evidence yet
    snapshot = first.dump_client(client)
    assert snapshot is not None
    taken_over = Pipeline(model)
    taken_over.load_client(client, json.loads(json.dumps(snapshot)))
    assert named(taken_over, list(after)) == [client]
    assert named(Pipeline(model), list(after)) == []  # a cold start sees half a burst


def test_events_held_for_time_order_move_with_the_client(model) -> None:  # type: ignore[no-untyped-def]
    """The client-level detector holds the last seconds of a client's events
    to take them in time order: a snapshot taken then carries them, so the
    pipeline that takes the client over finds what an uninterrupted one does."""
    names = traffic.dga("cryptolocker", 12)
    client = "payments/batch-1"
    events = sorted(burst(100, names, client, "payments"), key=lambda e: e.ts)
    later = [DnsEvent(events[-1].ts + 1 + i, client, "payments", "wikipedia.org", "A",
                      "NOERROR") for i in range(30)]  # fmt: skip
    whole = Pipeline(model)
    expected = [(f.client, f.name) for f in whole.process(events + later, final=True).findings]
    assert (client, names[-1]) in expected
    first = Pipeline(model)
    assert first.process(events).findings == []  # the burst's last seconds are held
    snapshot = first.dump_client(client)
    assert snapshot is not None
    assert snapshot["infected"][-1]  # ... and in the snapshot
    taken_over = Pipeline(model)
    taken_over.load_client(client, json.loads(json.dumps(snapshot)))
    found = [(f.client, f.name) for f in taken_over.process(later, final=True).findings]
    assert found == expected
    # without the held events, the C2 that ends the burst is never seen
    cold = Pipeline(model)
    assert (client, names[-1]) not in [
        (f.client, f.name) for f in cold.process(later, final=True).findings
    ]


def test_what_is_held_for_a_busy_client_stays_bounded(model) -> None:  # type: ignore[no-untyped-def]
    """A client with evidence that resolves thousands of names a second: the
    names others asked for too are held as counts per second, its own names
    up to a bound, so its snapshot stays small (it is one Kafka record)."""
    client = "shop/crawler-1"
    events = burst(100, traffic.dga("cryptolocker", 8), client, "shop")
    popular = traffic.benign(200)
    others = [DnsEvent(100 + i / 1000, f"shop/web-{i % 3}", "shop", n, "A", "NOERROR", A)
              for i, n in enumerate(popular)]  # fmt: skip
    busy = [DnsEvent(103 + i / 2000, client, "shop", popular[i % 200] if i % 2 else
                     f"cdn{i}x.net", "A", "NOERROR", A)
            for i in range(8000)]  # fmt: skip
    pipeline = Pipeline(model)
    pipeline.process(sorted(events + others, key=lambda e: e.ts))
    for i in range(0, len(busy), 1000):
        pipeline.process(busy[i : i + 1000])
        snapshot = pipeline.dump_client(client)
        assert snapshot is not None
        assert len(snapshot["infected"][-1]) <= InfectedSettings().max_held_per_client
        assert len(json.dumps(snapshot)) < 32 * 1024


def incident_alerts(pipeline: Pipeline, events: list[DnsEvent]) -> list[tuple[str, int, str]]:
    _findings, alerts, _ = run(pipeline, events)
    return [(a.incident.incident["id"], a.incident.incident["alerts"], a.decision.finding.summary)
            for a in alerts]  # fmt: skip


def test_alerts_after_the_move_are_those_of_an_uninterrupted_run(model) -> None:  # type: ignore[no-untyped-def]
    """The open incident comes along: its id and alert count go on, so the
    next alert is the one an uninterrupted worker would send (the C2 of the
    second burst), not a new incident naming the pod again."""
    names = traffic.dga("cryptolocker", 40)
    client = "payments/batch-1"
    first_half = burst(100, names[:20], client, "payments")
    second_half = burst(200, names[20:], client, "payments")
    whole = Pipeline(model)
    incident_alerts(whole, list(first_half))
    expected = incident_alerts(whole, list(second_half))
    first = Pipeline(model)
    opened = incident_alerts(first, list(first_half))
    assert opened
    snapshot = first.dump_client(client)
    assert snapshot is not None
    taken_over = Pipeline(model)
    taken_over.load_client(client, snapshot)
    assert incident_alerts(taken_over, list(second_half)) == expected
    assert {i for i, _, _ in expected} == {opened[0][0]}  # the same incident
    cold = incident_alerts(Pipeline(model), list(second_half))
    assert {i for i, _, _ in cold}.isdisjoint({opened[0][0]})  # cold: a new incident


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"v": 99},
        {"v": 1, "rate": "x"},
        {"v": 1, "storm": [[1, 2], "zz", {}, 0]},
        {"v": 1, "infected": [1]},
        {"v": 1, "incidents": [["id", "dga"]]},
    ],
)
def test_a_snapshot_of_another_shape_is_refused_and_the_client_starts_afresh(model, bad) -> None:  # type: ignore[no-untyped-def]
    client = "payments/batch-1"
    pipeline = Pipeline(model)
    run(pipeline, burst(100, traffic.dga("cryptolocker", 10), client, "payments"))
    assert pipeline.dump_client(client) is not None
    with pytest.raises(ValueError, match="snapshot"):
        pipeline.load_client(client, bad)
    assert pipeline.dump_client(client) is None
