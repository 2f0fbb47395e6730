"""Each detector on synthetic traffic: the attack is found, benign traffic is not."""

from __future__ import annotations

import pytest

from detectors.events import Answer
from detectors.fastflux import FastFlux
from detectors.newdomain import NewDomainSettings, NewlyObservedDomain
from detectors.nxdomain import NxdomainStorm
from detectors.rate import RateAnomaly, RateSettings
from detectors.tunnel import Tunneling
from tests.unit import traffic

pytestmark = pytest.mark.unit


def run(detector, events):  # type: ignore[no-untyped-def]
    out = []
    for ev in events:
        out.extend(detector.update(ev))
    return out


# -- NXDOMAIN storm ---------------------------------------------------------------
def test_nxdomain_storm_from_dga_bot() -> None:
    det = NxdomainStorm()
    names = traffic.dga("ramnit")
    events = [traffic.event(1000 + i * 0.5, n, rcode="NXDOMAIN") for i, n in enumerate(names[:100])]
    findings = run(det, events)
    assert len(findings) == 1  # one alert, then the cooldown holds
    f = findings[0]
    assert f.detector == "nxdomain_storm"
    assert f.evidence["nxdomain"] >= 20
    assert f.evidence["distinct_names"] >= 15
    assert f.evidence["top_parents"]


def test_nxdomain_storm_quiet_on_benign_browsing() -> None:
    assert run(NxdomainStorm(), traffic.browsing(0, 600, 5)) == []


def test_nxdomain_storm_needs_distinct_names() -> None:
    # the same broken name retried is a misconfiguration, not a DGA storm
    events = [traffic.event(i * 0.5, "printer.corp.invalid", rcode="NXDOMAIN") for i in range(100)]
    assert run(NxdomainStorm(), events) == []


def test_nxdomain_state_is_bounded() -> None:
    det = NxdomainStorm()
    det.clients.max_keys = 50
    for i in range(500):
        det.update(traffic.event(i, f"x{i}.com", client=f"c{i}", rcode="NXDOMAIN"))
    assert len(det.clients) == 50


# -- tunnelling -------------------------------------------------------------------
@pytest.mark.parametrize("tool", ["dns2tcp", "iodine", "dnscat2"])
def test_tunnel_found_for_each_tool(tool: str) -> None:
    names = traffic.tunnel(tool, 300)
    events = [traffic.event(i * 0.2, n, qtype="TXT") for i, n in enumerate(names)]
    findings = run(Tunneling(), events)
    assert findings, tool
    assert findings[0].detector == "tunnel"
    assert findings[0].name is not None
    assert findings[0].name in names[0]


def test_tunnel_quiet_on_benign_browsing() -> None:
    assert run(Tunneling(), traffic.browsing(0, 600, 10)) == []


def test_tunnel_quiet_on_cdn_style_hash_subdomains_at_low_volume() -> None:
    events = [traffic.event(i * 5.0, f"r{i % 7}---sn-4g5e6nze.googlevideo.com") for i in range(100)]
    assert run(Tunneling(), events) == []


# -- rate anomaly -----------------------------------------------------------------
def test_rate_spike_after_baseline() -> None:
    det = RateAnomaly(RateSettings(interval_s=10, warmup_intervals=12, min_count=200))
    steady = traffic.browsing(0, 300, 3)  # 30 per interval
    spike = traffic.browsing(300, 10, 100, seed=2)  # 1000 in one interval
    after = traffic.browsing(310, 20, 3, seed=3)
    findings = run(det, steady + spike + after)
    assert len(findings) == 1
    assert findings[0].evidence["count"] >= 900
    assert findings[0].evidence["z"] >= 6


def test_rate_quiet_when_steady_and_during_cold_start() -> None:
    det = RateAnomaly()
    assert run(det, traffic.browsing(0, 900, 3)) == []
    cold = RateAnomaly()
    burst = traffic.browsing(0, 10, 100) + traffic.browsing(10, 20, 3, seed=4)
    assert run(cold, burst) == []  # no baseline yet: no verdict on a new client


def test_rate_baseline_restored_elsewhere_continues_as_if_uninterrupted() -> None:
    settings = RateSettings(interval_s=10, warmup_intervals=12, min_count=200)
    steady = traffic.browsing(0, 300, 3)
    spike = traffic.browsing(300, 10, 100, seed=2) + traffic.browsing(310, 20, 3, seed=3)
    whole = RateAnomaly(settings)
    expected = run(whole, steady + spike)
    first = RateAnomaly(settings)
    run(first, steady)
    clients = {ev.client for ev in steady}
    saved = {c: first.dump(c) for c in clients}
    taken_over = RateAnomaly(settings)  # another worker, or this one after a restart
    for c, v in saved.items():
        assert v is not None
        taken_over.load(c, v)
    assert run(taken_over, spike) == expected != []
    # a snapshot written before intervals waited for late events (no next-interval count)
    older = RateAnomaly(settings)
    for c, v in saved.items():
        assert v is not None
        assert v[5] == 0
        older.load(c, v[:5])
    assert run(older, spike) == expected
    cold = RateAnomaly(settings)
    assert run(cold, spike) == []  # without the baseline the spike goes unseen


def two_threads(events: list, lag_s: float, batch_s: float = 1.0) -> list:  # type: ignore[type-arg]
    """``events`` (in time order) as the worker gets them from an Envoy with two
    worker threads: every other query on each thread, each thread's batches
    shipped every ``batch_s``, the second thread's ``lag_s`` after the first's."""
    arrivals = []
    for i, ev in enumerate(events):
        lag = lag_s if i % 2 else 0.0
        shipped = ev.ts // batch_s * batch_s + batch_s + lag
        arrivals.append((shipped, i % 2, i, ev))
    return [ev for *_, ev in sorted(arrivals, key=lambda a: a[:3])]


def test_rate_counts_a_pods_queries_that_arrive_late_from_another_thread() -> None:
    settings = RateSettings(interval_s=10, warmup_intervals=12, min_count=200)
    steady = traffic.browsing(0, 300, 6)  # 60 per interval
    spike = traffic.browsing(300, 10, 100, seed=2) + traffic.browsing(310, 30, 6, seed=3)
    in_order, arrived = RateAnomaly(settings), RateAnomaly(settings)
    expected = run(in_order, steady + spike)
    late = two_threads(steady + spike, lag_s=2.0)
    assert [ev.ts for ev in late] != sorted(ev.ts for ev in late)  # out of order indeed
    found = run(arrived, late)
    assert [f.evidence for f in found] == [f.evidence for f in expected] != []
    client = steady[0].client
    assert arrived.dump(client) == in_order.dump(client)  # the same baseline, to the query
    assert arrived.late_dropped == 0


def test_rate_drops_and_counts_events_later_than_the_lateness() -> None:
    det = RateAnomaly(RateSettings(interval_s=10, lateness_s=5))
    run(det, traffic.browsing(0, 30, 1))  # intervals 0-2; the newest event at 29 s
    run(det, [traffic.event(14.0, "late.example.com")])  # interval 1 closed at 25 s
    assert det.late_dropped == 1
    run(det, [traffic.event(27.0, "in-time.example.com")])  # interval 2 is open until 35 s
    assert det.late_dropped == 1
    with pytest.raises(ValueError, match="lateness_s"):
        RateSettings(interval_s=10, lateness_s=11)


# -- newly observed domains --------------------------------------------------------
def test_new_domain_after_warmup_only_once() -> None:
    det = NewlyObservedDomain(NewDomainSettings(warmup_s=60, rotate_s=3600, capacity=10_000))
    warm = traffic.browsing(0, 120, 5)
    assert run(det, warm[:300]) == []  # warm-up: everything is new, nothing reported
    later = [
        traffic.event(200, "brand-new-example.com"),
        traffic.event(201, "www.brand-new-example.com"),
    ]
    findings = run(det, later)
    assert [f.name for f in findings] == ["brand-new-example.com"]


def test_new_domain_forgets_after_two_rotations() -> None:
    s = NewDomainSettings(warmup_s=0, rotate_s=100, capacity=1000)
    det = NewlyObservedDomain(s)
    assert run(det, [traffic.event(10, "a-site.com")])  # first ever: new
    assert run(det, [traffic.event(150, "a-site.com")]) == []  # in the previous filter
    assert run(det, [traffic.event(350, "a-site.com")])  # two periods unseen: new again


def test_new_domain_queried_every_period_is_never_forgotten() -> None:
    det = NewlyObservedDomain(NewDomainSettings(warmup_s=0, rotate_s=100, capacity=1000))
    assert run(det, [traffic.event(10, "a-site.com")])
    for t in (20, 150, 250, 350, 450, 455):  # once or more every period
        assert run(det, [traffic.event(t, "a-site.com")]) == [], t


def test_new_domain_cache_does_not_outlive_rotation_or_scope() -> None:
    s = NewDomainSettings(warmup_s=0, rotate_s=100, capacity=1000, max_scopes=1, recent=4)
    det = NewlyObservedDomain(s)
    assert run(det, [traffic.event(10, "a-site.com")])
    assert run(det, [traffic.event(11, "a-site.com")]) == []  # answered by the cache
    assert run(det, [traffic.event(350, "a-site.com")])  # the cache entry is stale by now
    other = traffic.event(360, "a-site.com")
    other_scope = type(other)(
        **{**{f: getattr(other, f) for f in other.__slots__}, "namespace": "x"}
    )
    assert run(det, [other_scope])  # another scope evicts the first (max_scopes=1)
    assert run(det, [traffic.event(361, "a-site.com")])  # so its cached names are gone too


def test_new_domain_ignores_nxdomain() -> None:
    det = NewlyObservedDomain(NewDomainSettings(warmup_s=0))
    assert run(det, [traffic.event(10, "nope.com", rcode="NXDOMAIN")]) == []


# -- fast flux --------------------------------------------------------------------
def flux_answers(i: int, per_answer: int) -> tuple[Answer, ...]:
    return tuple(
        Answer("A", 60, f"{20 + (i * 3 + k) * 7 % 200}.{(i * 3 + k) * 13 % 250}.1.{i}")
        for k in range(per_answer)
    )


def test_fast_flux_many_networks_low_ttl() -> None:
    events = [
        traffic.event(i * 10.0, "flux.example.net", answers=flux_answers(i, 3)) for i in range(30)
    ]
    findings = run(FastFlux(), events)
    assert len(findings) == 1
    assert findings[0].evidence["distinct_networks"] >= 6


def test_fast_flux_needs_answers_carrying_several_addresses() -> None:
    # one random address per answer, as a load balancer or a synthetic resolver
    # gives: not a flux network's wide answers
    events = [
        traffic.event(i * 10.0, "lb.example.net", answers=flux_answers(i, 1)) for i in range(60)
    ]
    assert run(FastFlux(), events) == []


def test_fast_flux_quiet_for_cdn_rotation_in_one_network() -> None:
    events = [
        traffic.event(
            i * 10.0, "cdn.example.com", answers=(Answer("A", 20, f"151.101.{i % 250}.{i}"),)
        )
        for i in range(50)
    ]
    assert run(FastFlux(), events) == []


def test_fast_flux_ignores_long_ttls() -> None:
    events = [
        traffic.event(i * 10.0, "stable.example.com", answers=(Answer("A", 3600, f"{i}.{i}.1.1"),))
        for i in range(50)
    ]
    assert run(FastFlux(), events) == []
