"""The verdict policy's precedence, scopes, shadow mode and expiry; the whole pipeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectors.events import Answer, EventError, from_v1
from detectors.findings import Finding
from detectors.pipeline import Pipeline
from detectors.verdicts import (
    Allowlist,
    DetectorRule,
    PolicySettings,
    VerdictPolicy,
    default_rules,
)
from models import artifact
from streams.engine.app import load_allowlist
from tests.unit import traffic

pytestmark = pytest.mark.unit


def finding(
    detector: str = "dga",
    name: str | None = "qzkfhwpxl.biz",
    score: float = 0.9999,
    ns: str = "shop",
) -> Finding:
    return Finding(detector, 1000.0, f"{ns}/pod-1", ns, name, score, "why", {"score": score})


def test_a_finding_blocks_in_its_namespace_until_several_namespaces_agree() -> None:
    policy = VerdictPolicy()
    d = policy.decide(finding())
    assert d.disposition == "blocked"
    v = d.verdict
    assert v is not None
    assert (v.scope, v.name, v.match, v.action) == (
        "ns:shop",
        "qzkfhwpxl.biz",
        "suffix",
        "nxdomain",
    )
    assert v.expires == 1000.0 + 86_400.0
    assert v.key == "ns:shop|qzkfhwpxl.biz"
    assert "dga" in v.reason
    assert "namespace shop only" in v.reason
    # the same namespace again: still scoped; a second namespace: still scoped
    assert policy.decide(finding()).verdict.scope == "ns:shop"  # type: ignore[union-attr]
    assert policy.decide(finding(ns="payments")).verdict.scope == "ns:payments"  # type: ignore[union-attr]
    third = policy.decide(finding(ns="legacy")).verdict
    assert third is not None
    assert (third.scope, third.key) == ("*", "*|qzkfhwpxl.biz")
    assert "global: findings from 3 namespaces" in third.reason


def test_evidence_from_other_namespaces_expires_with_the_rule() -> None:
    policy = VerdictPolicy(PolicySettings(global_min_namespaces=2))
    first = Finding("dga", 1000.0, "a/p", "a", "qzkfhwpxl.biz", 0.9999, "why")
    later = Finding("dga", 1000.0 + 90_000, "b/p", "b", "qzkfhwpxl.biz", 0.9999, "why")
    assert policy.decide(first).verdict.scope == "ns:a"  # type: ignore[union-attr]
    assert policy.decide(later).verdict.scope == "ns:b"  # type: ignore[union-attr]
    soon = Finding("dga", 1000.0 + 90_001, "a/p", "a", "qzkfhwpxl.biz", 0.9999, "why")
    assert policy.decide(soon).verdict.scope == "*"  # type: ignore[union-attr]


def test_a_client_without_a_namespace_makes_no_verdict_and_never_global() -> None:
    policy = VerdictPolicy(PolicySettings(global_min_namespaces=0))
    d = policy.decide(Finding("dga", 1.0, "10.0.0.7", "", "qzkfhwpxl.biz", 0.9999, "why"))
    assert (d.verdict, d.disposition) == (None, "unscoped")
    assert policy.decide(finding()).verdict.scope == "ns:shop"  # type: ignore[union-attr]
    for ns in ("a", "b", "c", "d"):
        assert policy.decide(finding(ns=ns)).verdict.scope == f"ns:{ns}"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "root"),
        ("com", "public suffix"),
        ("co.uk", "public suffix"),
        ("duckdns.org", "public suffix"),
        ("github.io", "public suffix"),
        ("kubernetes.default.svc.cluster.local", "internal zone"),
        ("10.in-addr.arpa", "internal zone"),
        ("printer.local", "internal zone"),
        ("ip-10-0-0-1.ec2.internal", "internal zone"),
        ("host.corp", "internal zone"),
        ("zz\n+\td\t*", "not allowed"),
        ("a b.example.net", "not allowed"),
    ],
)
def test_verdicts_never_target_the_root_a_public_suffix_or_an_internal_zone(
    name: str, why: str
) -> None:
    d = VerdictPolicy().decide(finding("tunnel", name, 0.9))
    assert (d.verdict, d.disposition) == (None, "not-blockable")
    assert why in d.why


def test_a_suffix_verdict_is_refused_when_an_allowlisted_name_is_under_it() -> None:
    policy = VerdictPolicy(allowlist=Allowlist(["www.google.com", "api.shop.example.net"]))
    d = policy.decide(finding("tunnel", "google.com", 0.9))
    assert (d.disposition, d.why) == ("allowlisted", "www.google.com is allowlisted")
    assert policy.decide(finding("tunnel", "shop.example.net", 0.9)).disposition == "allowlisted"
    # an exact verdict on the parent leaves the listed name alone
    rules = {**default_rules(), "tunnel": DetectorRule(match="exact", min_score=0.5)}
    exact = VerdictPolicy(PolicySettings(rules=rules), Allowlist(["www.google.com"]))
    assert exact.decide(finding("tunnel", "google.com", 0.9)).disposition == "blocked"


def test_a_per_name_score_never_blocks_a_hosting_name() -> None:
    policy = VerdictPolicy()
    for name in ("d1a2b3c4e5f6.cloudfront.net", "xk2j9q.s3.amazonaws.com", "qzkfhwpxl.herokuapp.com",
                 "acct8x.blob.core.windows.net"):  # fmt: skip
        assert policy.decide(finding("dga", name)).disposition == "needs-client-evidence", name
        # client-level evidence may
        assert policy.decide(finding("infected_client", name)).disposition == "blocked", name
    # dynamic-DNS parents stay blockable on the score
    assert policy.decide(finding("dga", "qzkfhwpxl.duckdns.org")).disposition == "blocked"


def test_allowlist_beats_detectors_including_parent_suffix() -> None:
    policy = VerdictPolicy(allowlist=Allowlist(["example.com"]))
    assert policy.decide(finding(name="example.com")).disposition == "allowlisted"
    assert policy.decide(finding(name="cdn.example.com")).disposition == "allowlisted"
    assert policy.decide(finding(name="notexample.com")).disposition == "blocked"


def test_allowlisted_public_suffix_covers_only_itself() -> None:
    # popularity rankings list shared parents: their tenants stay blockable
    policy = VerdictPolicy(
        allowlist=Allowlist(["duckdns.org", "github.io", "co.uk", "example.com"])
    )
    assert policy.decide(finding(name="duckdns.org")).disposition == "not-blockable"
    assert policy.decide(finding(name="qzkfhwpxl.duckdns.org")).disposition == "blocked"
    assert policy.decide(finding("tunnel", "a.qzkfhwpxl.github.io", 0.9)).disposition == "blocked"
    assert policy.decide(finding(name="qzkfhwpxl.co.uk")).disposition == "blocked"
    assert policy.decide(finding(name="a.b.example.com")).disposition == "allowlisted"


def test_findings_without_a_name_are_alerts_only() -> None:
    assert VerdictPolicy().decide(finding("nxdomain_storm", None)).verdict is None
    assert VerdictPolicy().decide(finding("rate", None)).disposition == "alert-only"


def test_namespace_scope_and_per_namespace_shadow() -> None:
    policy = VerdictPolicy(PolicySettings(shadow_namespaces=frozenset({"dev"})))
    prod = policy.decide(finding("tunnel", "evil.example.net", 0.9, ns="prod"))
    dev = policy.decide(finding("tunnel", "evil.example.net", 0.9, ns="dev"))
    assert prod.verdict is not None
    assert (prod.verdict.scope, prod.verdict.action) == ("ns:prod", "nxdomain")
    assert dev.verdict is not None
    assert (dev.verdict.scope, dev.verdict.action, dev.disposition) == (
        "ns:dev",
        "shadow",
        "shadow",
    )


def test_global_shadow_and_min_score() -> None:
    policy = VerdictPolicy(PolicySettings(shadow_global=True))
    v = policy.decide(finding()).verdict
    assert v is not None
    assert v.action == "shadow"
    assert (
        VerdictPolicy().decide(finding("tunnel", "t.example.net", 0.2)).disposition
        == "below-threshold"
    )


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="action"):
        DetectorRule(action="drop-table")
    with pytest.raises(ValueError, match="match"):
        DetectorRule(match="planet")


def test_v1_event_decoding_and_errors() -> None:
    base = {
        "v": 1,
        "ts": "2026-11-25T12:00:00.000001Z",
        "node": {"namespace": "shop", "pod": "web-1"},
        "client": {"ip": "10.0.0.1", "port": 5353},
        "transport": "tcp",
        "query": {"id": 1, "name": "WWW.Example.com.", "type": "a", "class": "IN"},
        "response": {
            "rcode": "NOERROR",
            "answers": [{"name": "www.example.com", "type": "A", "ttl": 60, "data": "1.2.3.4"}],
        },
    }
    ev = from_v1(base)
    assert (ev.client, ev.qname, ev.qtype, ev.rcode) == (
        "shop/web-1",
        "www.example.com",
        "A",
        "NOERROR",
    )
    assert ev.answers[0].ttl == 60
    expected = datetime(2026, 11, 25, 12, 0, 0, 1, tzinfo=UTC).timestamp()
    assert abs(ev.ts - expected) < 1e-6
    with pytest.raises(EventError, match=r"query\.name"):
        from_v1({**base, "query": {"type": "A"}})
    with pytest.raises(EventError, match="ts"):
        from_v1({**base, "ts": "yesterday"})
    with pytest.raises(EventError, match="v:"):
        from_v1({**base, "v": 2})


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return artifact.load()[0]


def _attack_traffic():  # type: ignore[no-untyped-def]
    events = traffic.browsing(0, 180, 5, client="shop/web-1")
    bot = traffic.dga("cryptolocker", 61)
    # a burst of nonexistent names that ends with one that resolves: the C2
    events += [
        traffic.event(60 + i * 0.5, n, client="shop/infected", rcode="NXDOMAIN")
        for i, n in enumerate(bot[:60])
    ]
    events.append(
        traffic.event(
            90.2, bot[60], client="shop/infected", answers=(Answer("A", 300, "198.51.100.7"),)
        )
    )
    return sorted(events, key=lambda e: e.ts)


def test_pipeline_names_the_infected_pod_blocks_its_c2_and_is_deterministic(model) -> None:  # type: ignore[no-untyped-def]
    events = _attack_traffic()
    results = []
    for _ in range(2):
        p = Pipeline(model, allowlist=traffic.benign(1000))
        r = p.process(events[:300])
        r2 = p.process(events[300:])
        results.append(r.findings + r2.findings)
    assert results[0] == results[1]
    detectors = {f.detector for f in results[0]}
    assert {"infected_client", "nxdomain_storm"} <= detectors
    p = Pipeline(model, allowlist=traffic.benign(1000))
    result = p.process(events)
    named = [a.decision.finding for a in result.alerts if a.decision.finding.name is None
             and a.decision.finding.detector == "infected_client"]  # fmt: skip
    assert [f.client for f in named] == ["shop/infected"]
    blocked = {(d.verdict.scope, d.verdict.name) for d in result.decisions if d.verdict is not None}
    c2 = traffic.dga("cryptolocker", 61)[60]
    assert blocked == {("ns:shop", c2)}  # the C2, in the pod's namespace; no other name
    assert not any(a.decision.finding.client == "shop/web-1" for a in result.alerts)


def test_top_n_allowlist_leaves_tenants_of_shared_parents_blockable(shared_data: Path) -> None:
    # the default allowlist: the 10,000 most popular names of the ranking
    top = load_allowlist(shared_data / "benign_top.csv", 10_000)
    assert {"duckdns.org", "ddns.net", "blogspot.com", "github.io", "mooo.com"} <= set(top)
    policy = VerdictPolicy(allowlist=Allowlist(top))
    for name in ("qzkfhwpxl.duckdns.org", "qzkfhwpxl.ddns.net", "wreczn.mooo.com"):
        assert policy.decide(finding(name=name)).disposition == "blocked", name
    assert policy.decide(finding(name="www.google.com")).disposition == "allowlisted"
