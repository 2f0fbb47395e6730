"""The per-client detectors take a batch grouped by client (``update_many``)
and find exactly what they find taking the same events one at a time in time
order: grouping is a data shape for speed, never a change of meaning."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.events import DnsEvent, from_v1
from detectors.names import split_name
from detectors.newdomain import NewDomainSettings, NewlyObservedDomain
from detectors.nxdomain import NxdomainSettings, NxdomainStorm
from detectors.rate import RateAnomaly, RateSettings
from detectors.tunnel import Tunneling
from streams.sim.workloads import Simulator

pytestmark = pytest.mark.unit


def _events(seconds: float) -> list[DnsEvent]:
    # a fixed start: the same events every run (interval boundaries included)
    start = 1_750_000_000.0
    evs = [from_v1(e) for e in Simulator(seed=5).events(start, seconds)]
    # and a pod whose query rate jumps now and then (the simulated pods keep theirs)
    for second in range(int(seconds)):
        n = 40 if second % 300 in (200, 201) else 1
        evs += [
            DnsEvent(
                start + second + i / n, "jobs/spiky", "jobs", "api.example.com", "A", "NOERROR"
            )
            for i in range(n)
        ]
    return sorted(evs, key=lambda e: e.ts)


def _found(findings: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((f.ts, f.detector, f.client, f.name, f.score, f.summary) for f in findings)


def _batched(det: Any, evs: list[DnsEvent], size: int, by_client: bool, splits: bool) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(evs), size):
        batch = evs[i : i + size]
        if by_client:
            batch = sorted(batch, key=lambda e: e.client)  # stable: time order per client
        if splits:
            out += det.update_many(batch, [split_name(e.qname) for e in batch])
        else:
            out += det.update_many(batch)
    return out


@pytest.mark.parametrize("size", [1, 37, 2000])
def test_grouped_batches_find_what_one_event_at_a_time_finds(size: int) -> None:
    evs = _events(900)
    # low floors too, so that every detector has findings to compare
    cases: list[tuple[Any, Any, bool, bool]] = [
        (lambda: NxdomainStorm(), "nxdomain_storm", True, True),
        (
            lambda: NxdomainStorm(NxdomainSettings(min_nxdomain=5, min_distinct=3, cooldown_s=20)),
            "nxdomain_storm",
            True,
            True,
        ),
        (lambda: Tunneling(), "tunnel", True, True),
        (
            lambda: RateAnomaly(RateSettings(warmup_intervals=3, z_threshold=1.5, min_count=5)),
            "rate",
            True,
            False,
        ),
        (lambda: NewlyObservedDomain(NewDomainSettings(warmup_s=0)), "new_domain", False, True),
        # namespaces evicted within a batch (more of them than the bound)
        (
            lambda: NewlyObservedDomain(NewDomainSettings(warmup_s=0, max_scopes=2)),
            "new_domain",
            False,
            True,
        ),
    ]
    for make, name, by_client, splits in cases:
        one = make()
        expected = [f for ev in evs for f in one.update(ev)]
        assert expected, f"{name}: the simulated pods give it findings to compare"
        got = _batched(make(), evs, size, by_client, splits)
        assert _found(got) == _found(expected), name
