"""Detection on what a cluster's DNS looks like: search-path expansions,
internal zones, hosting names, typos, infected pods and their C2, incidents."""

from __future__ import annotations

import random
import string

import pytest

from detectors.events import Answer, DnsEvent
from detectors.findings import Finding
from detectors.incidents import Incidents, IncidentSettings
from detectors.pipeline import Pipeline
from detectors.zones import ClusterSettings, NameKind, Zones
from models import artifact
from tests.unit import traffic

pytestmark = pytest.mark.unit

A = (Answer("A", 300, "198.51.100.7"),)


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return artifact.load()[0]


def lookup(ts: float, name: str, client: str, ns: str, outcome: str = "ok") -> list[DnsEvent]:
    """What a glibc pod with ndots:5 sends for one lookup: the name under each
    search suffix (A and AAAA, NXDOMAIN), then the name itself."""
    out = []
    if name.count(".") < 5:
        for suffix in (f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"):
            for qtype in ("A", "AAAA"):
                out.append(DnsEvent(ts, client, ns, f"{name}.{suffix}", qtype, "NXDOMAIN"))
            ts += 0.001
    for qtype in ("A", "AAAA"):
        rcode = "NXDOMAIN" if outcome == "nx" else "NOERROR"
        answers = A if rcode == "NOERROR" and qtype == "A" else ()
        out.append(DnsEvent(ts, client, ns, name, qtype, rcode, answers))
    return out


def run(pipeline: Pipeline, events: list[DnsEvent]):  # type: ignore[no-untyped-def]
    events.sort(key=lambda e: e.ts)
    findings, alerts, names = [], [], {}
    for i in range(0, len(events), 500):
        r = pipeline.process(events[i : i + 500], final=i + 500 >= len(events))
        findings += r.findings
        alerts += r.alerts
        for k, n in r.names.items():
            names[k] = names.get(k, 0) + n
    return findings, alerts, names


def test_zones_classify_cluster_names() -> None:
    z = Zones(
        ClusterSettings(search_domains=("corp.example.com",), internal_zones=("intra.example.net",))
    )
    assert (
        z.kind("www.google.com.shop.svc.cluster.local", "shop", "NXDOMAIN")
        == NameKind.SEARCH_EXPANSION
    )
    assert (
        z.kind("www.google.com.svc.cluster.local", "shop", "NXDOMAIN") == NameKind.SEARCH_EXPANSION
    )
    assert (
        z.kind("www.google.com.corp.example.com", "shop", "NXDOMAIN") == NameKind.SEARCH_EXPANSION
    )
    # the same name answered is not an artefact, but it is internal
    assert z.kind("redis.shop.svc.cluster.local", "shop", "NOERROR") == NameKind.INTERNAL
    for name in ("10.0.0.10.in-addr.arpa", "printer.local", "db.intra.example.net",
                 "ip-10-0-0-1.ec2.internal", "nas.home.arpa", "x.corp", "b.1.ip6.arpa"):  # fmt: skip
        assert z.kind(name, "shop", "NOERROR") == NameKind.INTERNAL, name
    assert z.kind("d1a2b3c4e5f6.cloudfront.net") == NameKind.HOSTING
    assert z.kind("xk2j9q.s3.amazonaws.com") == NameKind.HOSTING
    assert z.kind("myapp-7f3k.azurewebsites.net") == NameKind.HOSTING
    assert z.kind("qzkfhwpxl.duckdns.org") == NameKind.DYNAMIC_DNS
    assert z.kind("qzkfhwpxl.no-ip.org") == NameKind.DYNAMIC_DNS
    assert z.kind("www.example.com") == NameKind.PUBLIC
    assert z.kind("co.uk") == NameKind.SUFFIX_ONLY
    assert z.blockable("com") == "a public suffix"
    assert z.blockable("x.svc.cluster.local") == "an internal zone"


def test_a_pods_search_path_expansions_are_counted_and_never_evidence(model) -> None:  # type: ignore[no-untyped-def]
    """Two hundred external lookups with ndots:5 are 1,200 NXDOMAIN answers of
    distinct names under cluster.local in a few minutes: no storm, no
    tunnel, no DGA, no alert."""
    rng = random.Random(3)
    names = traffic.benign(2000)
    events: list[DnsEvent] = []
    for i in range(200):
        base = rng.choice(["www.", "api.", "cdn.", ""]) + rng.choice(names)
        events += lookup(i * 0.5, base, "shop/web-1", "shop")
    findings, alerts, counted = run(Pipeline(model), events)
    assert findings == []
    assert alerts == []
    assert counted["search_expansion"] == 1200
    assert sum(counted.values()) - counted["search_expansion"] == 400


def test_internal_zones_are_never_a_tunnelling_parent(model) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(4)
    events = []
    for i in range(120):
        label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(40))
        events.append(DnsEvent(i * 0.4, "shop/web-1", "shop", f"{label}.pods.svc.cluster.local", "TXT",
                               "NOERROR", A))  # fmt: skip
        events.append(
            DnsEvent(i * 0.4, "shop/web-1", "shop", f"{label}.x.local", "TXT", "NOERROR", A)
        )
    findings, alerts, _ = run(Pipeline(model), events)
    assert findings == []
    assert alerts == []


def test_random_cdn_labels_are_never_blocked_on_their_score(model) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    events = []
    for i in range(300):
        label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(14))
        suffix = rng.choice(["cloudfront.net", "s3.amazonaws.com", "blob.core.windows.net",
                             "azureedge.net", "herokuapp.com", "web.app"])  # fmt: skip
        events += lookup(i * 2.0, f"{label}.{suffix}", f"shop/web-{i % 7}", "shop")
    findings, alerts, _ = run(Pipeline(model), events)
    assert [f for f in findings if f.name] == []
    assert alerts == []


def burst(
    start: float, names: list[str], client: str, ns: str, step: float = 0.3
) -> list[DnsEvent]:
    """A bot's burst: every name but the last answered NXDOMAIN, the last resolves."""
    out = []
    for i, name in enumerate(names):
        out += lookup(start + i * step, name, client, ns, "ok" if i == len(names) - 1 else "nx")
    return out


def healthy_browsing(seconds: float, clients: int, seed: int, typo_rate: float) -> list[DnsEvent]:
    rng = random.Random(seed)
    names = traffic.benign(3000)
    events = []
    for c in range(clients):
        t = rng.uniform(0, 5)
        while t < seconds:
            name = names[min(int(rng.paretovariate(1.1)) - 1, len(names) - 1)]
            outcome = "ok"
            if rng.random() < typo_rate:  # a letter dropped
                label, _, rest = name.partition(".")
                i = rng.randrange(len(label))
                name, outcome = f"{label[:i]}{label[i + 1 :]}.{rest}", "nx"
            events += lookup(t, name, f"shop/browser-{c}", "shop", outcome)
            t += rng.expovariate(0.5)
    return events


@pytest.mark.parametrize("family", ["cryptolocker", "suppobox"])
def test_an_infected_pod_is_named_and_its_c2_blocked_in_its_namespace(model, family: str) -> None:  # type: ignore[no-untyped-def]
    names = traffic.dga(family, 80)
    events = healthy_browsing(400, 5, seed=6, typo_rate=0.02)
    events += burst(100, names[:40], "payments/batch-1", "payments")
    events += burst(300, names[40:80], "payments/batch-1", "payments")
    _findings, alerts, _ = run(Pipeline(model), events)
    named = [a.decision.finding for a in alerts if a.decision.finding.detector == "infected_client"
             and a.decision.finding.name is None]  # fmt: skip
    assert [f.client for f in named] == ["payments/batch-1"]  # one incident, named once
    assert named[0].evidence["style"] in ("random-character", "word-list", "volume")
    # named within the first burst, well before its 40 names are done
    assert named[0].ts < 100 + 30 * 0.3
    blocks = {(a.decision.verdict.scope, a.decision.verdict.name)
              for a in alerts if a.decision.verdict is not None}  # fmt: skip
    assert ("ns:payments", names[79]) in blocks  # the second burst's C2, once named
    assert {n for _, n in blocks} <= {names[39], names[79]}
    assert not [a for a in alerts if a.decision.finding.client.startswith("shop/")]


def test_typo_prone_browsers_are_not_named(model) -> None:  # type: ignore[no-untyped-def]
    events = healthy_browsing(900, 12, seed=7, typo_rate=0.15)
    findings, alerts, _ = run(Pipeline(model), events)
    assert [f for f in findings if f.detector == "infected_client"] == []
    assert alerts == []


def test_incidents_grow_instead_of_alerting_again() -> None:
    incidents = Incidents(IncidentSettings(realert_s=600, close_s=1800))
    updates = [incidents.update(Finding("nxdomain_storm", 100.0 + i * 60, "a/p", "a", None, 0.8,
                                        "storm", {"qname": f"x{i}.com"})) for i in range(30)]  # fmt: skip
    alerted = [u for u in updates if u.alert]
    assert len(alerted) == 3  # opened, then every ten minutes
    assert alerted[-1].incident["findings"] == 21
    assert updates[-1].incident["examples"] == ["x0.com", "x1.com", "x2.com", "x3.com", "x4.com"]
    # a verdict on a new target is alerted at once
    v = incidents.update(
        Finding("nxdomain_storm", 100.0 + 30 * 60, "a/p", "a", "c2.com", 0.9, "c2"), "c2.com"
    )
    assert v.alert
    # quiet for longer than close_s: the next finding opens a new incident
    later = incidents.update(
        Finding("nxdomain_storm", 100.0 + 30 * 60 + 4000, "a/p", "a", None, 0.8, "s")
    )
    assert later.alert
    assert later.incident["id"] != updates[0].incident["id"]
    assert later.incident["findings"] == 1


def test_the_incident_table_is_bounded() -> None:
    incidents = Incidents(IncidentSettings(max_incidents=100))
    for i in range(1000):
        incidents.update(Finding("rate", float(i), f"a/p{i}", "a", None, 0.5, "r"))
    assert len(incidents) == 100


def query_only(events: list[DnsEvent]) -> list[DnsEvent]:
    """The events as the UDP module ships them: queries, answers not observed."""
    return [DnsEvent(e.ts, e.client, e.namespace, e.qname, e.qtype, None, (), e.action, False)
            for e in events]  # fmt: skip


def test_a_udp_pod_is_named_from_queries_alone_and_says_answers_were_not_seen(model) -> None:  # type: ignore[no-untyped-def]
    names = traffic.dga("cryptolocker", 40)
    events = query_only(healthy_browsing(400, 5, seed=6, typo_rate=0.02)
                        + burst(100, names, "payments/batch-1", "payments"))  # fmt: skip
    _findings, alerts, names_seen = run(Pipeline(model), events)
    named = [a.decision.finding for a in alerts if a.decision.finding.detector == "infected_client"]
    assert [f.client for f in named] == ["payments/batch-1"]
    f = named[0]
    assert f.name is None  # no C2 without answers: it is the name that resolves
    assert (
        f.evidence["outcome_not_observed"]
        == f.evidence["nxdomain_names"] + f.evidence["outcome_not_observed"]
        > 0
    )
    assert "not observed" in f.summary
    assert [a for a in alerts if a.decision.verdict is not None] == []
    # ndots:5 expansions with their answers unseen are still expansions
    assert names_seen["search_expansion"] > 0


def test_healthy_udp_pods_with_typos_and_cdn_names_are_not_named(model) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(9)
    events = healthy_browsing(900, 12, seed=7, typo_rate=0.15)
    for i in range(300):  # a pod fetching from many CDN distributions and buckets
        label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(14))
        suffix = rng.choice(["cloudfront.net", "s3.amazonaws.com", "blob.core.windows.net"])
        events += lookup(i * 0.5, f"{label}.{suffix}", "shop/assets-1", "shop")
    findings, alerts, _ = run(Pipeline(model), query_only(events))
    assert [f for f in findings if f.detector == "infected_client"] == []
    assert alerts == []


def test_volume_alone_never_names_a_client_whose_answers_were_not_seen(model) -> None:  # type: ignore[no-untyped-def]
    # many names of one suffix nobody else asked for, neither DGA-like nor words
    names = [f"shop{i:04d}x.com" for i in range(60)]
    events = query_only(burst(10, names, "shop/crawler-1", "shop", step=0.5))
    findings, _alerts, _ = run(Pipeline(model), events)
    assert not [f for f in findings if f.evidence.get("style") == "volume"]
    # the same burst with its NXDOMAINs seen is the volume shape
    findings, _alerts, _ = run(
        Pipeline(model), burst(10, names, "shop/crawler-1", "shop", step=0.5)
    )
    assert any(f.evidence.get("style") == "volume" for f in findings)


def interleaved(events: list[DnsEvent], late_s: float) -> list[list[DnsEvent]]:
    """The batches a worker takes, one record each, from an Envoy with two
    worker threads, one of them ``late_s`` behind (``cluster_eval.shipped``)."""
    from streams.sim.cluster_eval import shipped

    events = sorted(events, key=lambda e: e.ts)
    batches: dict[tuple[float, int], list[DnsEvent]] = {}
    for ev, key in zip(events, shipped(events, late_s), strict=True):
        batches.setdefault(key, []).append(ev)
    return [batches[k] for k in sorted(batches)]


@pytest.mark.parametrize("late_s", [0.5, 2.0, 4.5])
def test_what_is_found_does_not_depend_on_how_batches_interleave(model, late_s: float) -> None:  # type: ignore[no-untyped-def]
    """A pod resolves a few names, then its bot walks a DGA list to the C2, and
    the pod goes on resolving. Whether one Envoy thread's batches reach the
    worker seconds after the other's must not change what is found."""
    client, ns = "payments/batch-1", "payments"
    popular, dga = traffic.benign(20), traffic.dga("cryptolocker", 20)

    def ask(ts: float, name: str, nx: bool = False) -> DnsEvent:  # fully qualified: no expansions
        return DnsEvent(ts, client, ns, name, "A", "NXDOMAIN" if nx else "NOERROR", () if nx else A)

    events = [ask(1000 + i * 0.05, n) for i, n in enumerate(popular)]
    events += [ask(1001 + i * 0.15, n, nx=True) for i, n in enumerate(dga[:-1])]
    t = 1001 + 19 * 0.15
    events.append(ask(t, dga[-1]))  # the C2
    while t < 1060:  # the pod goes on resolving
        t += 0.5
        events.append(ask(t, popular[int(t) % 20]))
    expected = [(f.detector, f.client, f.name)
                for f in Pipeline(model).process(events, final=True).findings
                if f.detector == "infected_client"]  # fmt: skip
    assert [n for _, _, n in expected] == [None, dga[-1]]
    pipeline, found = Pipeline(model), []
    batches = interleaved(events, late_s)
    for i, batch in enumerate(batches):
        result = pipeline.process(sorted(batch, key=lambda e: e.ts), final=i == len(batches) - 1)
        found += [(f.detector, f.client, f.name) for f in result.findings
                  if f.detector == "infected_client"]  # fmt: skip
    assert found == expected


@pytest.mark.parametrize("reorder_s", [5.0, 0.0])
def test_a_cluster_delivered_by_two_envoy_threads_is_judged_as_in_time_order(
    model, reorder_s: float
) -> None:  # type: ignore[no-untyped-def]
    """``dnsguard eval cluster --late``: the same cluster, one Envoy thread's
    batches two seconds late, in a live worker's small batches. What is found
    is what time order finds; without the time-order stage, C2s are lost."""
    from pathlib import Path

    from detectors.infected import InfectedSettings
    from detectors.pipeline import DetectorSettings
    from streams.sim.cluster import ClusterSpec
    from streams.sim.cluster_eval import run

    spec = ClusterSpec(seed=2, duration_s=1800, pods=40, infected=4)
    settings = DetectorSettings(infected=InfectedSettings(reorder_s=reorder_s))
    data = Path(traffic.DATA)
    in_order = run(spec, data, model, settings)
    late = run(spec, data, model, settings, late_s=2.0)
    assert in_order.c2_blocked > 0
    figures = ("found_random", "found_wordlist", "c2_blocked", "healthy_alerted")
    same = [getattr(late, f) for f in figures] == [getattr(in_order, f) for f in figures]
    assert same == (reorder_s > 0), (in_order, late)


def test_a_client_whose_events_come_after_the_others_is_judged_as_they_come(model) -> None:  # type: ignore[no-untyped-def]
    """One Kafka partition read behind the others: a pod's whole DGA walk
    arrives after other pods' events have moved the event-time watermark
    past it. Those late events are taken up with the batch they come in, not
    held until newer events or the clock arrive (a consumer at the end of
    its input has neither)."""
    from detectors.events import from_v1
    from streams.sim.workloads import Simulator

    evs = sorted((from_v1(e) for e in Simulator().events(1_750_000_000.0, 30)), key=lambda e: e.ts)
    bot = "payments/batch-1f0a"
    pipeline = Pipeline(model)
    pipeline.process([e for e in evs if e.client != bot])
    late = pipeline.process([e for e in evs if e.client == bot])
    named = [d.finding for d in late.decisions if d.finding.detector == "infected_client"]
    assert [f.client for f in named] == [bot, bot]
    assert named[0].name is None  # the pod named
    assert named[1].name  # then the C2 its walk ended in
