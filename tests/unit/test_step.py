"""The one step every consumer of events takes (``streams.engine.step``): no
I/O, the same outputs for the same events wherever it runs, the batch ordered
by time, alerts rendered once with their stable ids."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from detectors.events import from_v1
from detectors.pipeline import Pipeline
from models import artifact
from streams.engine.step import step
from streams.sim.workloads import Simulator

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return artifact.load()[0]


def events(seconds: float = 300):  # type: ignore[no-untyped-def]
    return [from_v1(e) for e in Simulator().events(time.time() - seconds, seconds)]


def test_the_same_batches_give_the_same_outputs(model) -> None:  # type: ignore[no-untyped-def]
    """Two workers (fresh pipelines) fed the same batches, each batch in a
    different order, agree on every alert and verdict."""
    evs = events()
    rng = random.Random(3)
    a, b = Pipeline(model), Pipeline(model)
    out_a, out_b = [], []
    for i in range(0, len(evs), 400):
        batch = evs[i : i + 400]
        shuffled = batch[:]
        rng.shuffle(shuffled)
        out_a.append(step(a, batch))
        out_b.append(step(b, shuffled))
    uids_a = [x.uid for o in out_a for x in o.alerts]
    assert uids_a, "the simulated DGA and tunnel pods raise alerts"
    assert uids_a == [x.uid for o in out_b for x in o.alerts]
    assert [v.as_dict() for o in out_a for v in o.verdicts] == [
        v.as_dict() for o in out_b for v in o.verdicts
    ]
    assert sum(o.events for o in out_a) == len(evs)


def test_outputs_are_rendered_and_counted(model) -> None:  # type: ignore[no-untyped-def]
    evs = events()
    out = step(Pipeline(model), evs[:])
    assert out.alerts
    for alert in out.alerts:
        assert alert.body["class_uid"] == 4003
        assert alert.body["metadata"]["uid"] == alert.uid
        assert alert.detector == alert.decision.finding.detector
    assert sum(out.findings.values()) == len(out.decisions)
    assert sum(out.verdict_actions.values()) == len(out.verdicts)
    assert sum(out.names.values()) == out.events
    ecs = step(Pipeline(model), evs[:], alert_format="ecs")
    assert [a.uid for a in ecs.alerts] == [a.uid for a in out.alerts]
    assert all("@timestamp" in a.body for a in ecs.alerts)


def test_a_batch_is_ordered_by_time(model) -> None:  # type: ignore[no-untyped-def]
    evs = events()[::-1]
    step(Pipeline(model), evs)
    assert all(x.ts <= y.ts for x, y in itertools.pairwise(evs))


def test_events_too_late_to_count_are_counted_by_detector(model) -> None:  # type: ignore[no-untyped-def]
    evs = sorted(events(60), key=lambda e: e.ts)
    pipeline = Pipeline(model)
    assert step(pipeline, evs[:]).late == {}
    # one client's query from 30 s before its newest: its rate interval has closed
    client = evs[-1].client
    newest = max(e.ts for e in evs if e.client == client)
    straggler = [e for e in evs if e.client == client and e.ts <= newest - 30][:1]
    assert straggler, "the simulated pod asked something 30 s before its last query"
    assert step(pipeline, straggler[:]).late == {"rate": 1}
    assert step(pipeline, []).late == {}
