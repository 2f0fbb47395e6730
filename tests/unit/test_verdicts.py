"""The verdict policy's precedence, scopes, shadow mode and expiry; the whole pipeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectors.events import EventError, from_v1
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
from streams.worker.app import load_allowlist
from tests.unit import traffic

pytestmark = pytest.mark.unit


def finding(
    detector: str = "dga",
    name: str | None = "qzkfhwpxl.biz",
    score: float = 0.9999,
    ns: str = "shop",
) -> Finding:
    return Finding(detector, 1000.0, f"{ns}/pod-1", ns, name, score, "why", {"score": score})


def test_dga_finding_becomes_global_suffix_block_with_expiry() -> None:
    d = VerdictPolicy().decide(finding())
    assert d.disposition == "blocked"
    v = d.verdict
    assert v is not None
    assert (v.scope, v.name, v.match, v.action) == ("global", "qzkfhwpxl.biz", "suffix", "nxdomain")
    assert v.expires == 1000.0 + 86_400.0
    assert v.key == "global|qzkfhwpxl.biz"
    assert "dga" in v.reason


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
    assert policy.decide(finding(name="duckdns.org")).disposition == "allowlisted"
    assert policy.decide(finding(name="qzkfhwpxl.duckdns.org")).disposition == "blocked"
    assert policy.decide(finding(name="a.qzkfhwpxl.github.io")).disposition == "blocked"
    assert policy.decide(finding(name="qzkfhwpxl.co.uk")).disposition == "blocked"
    assert policy.decide(finding(name="a.b.example.com")).disposition == "allowlisted"


def test_findings_without_a_name_are_alerts_only() -> None:
    assert VerdictPolicy().decide(finding("nxdomain_storm", None)).verdict is None
    assert VerdictPolicy().decide(finding("rate", None)).disposition == "alert-only"


def test_namespace_scope_and_per_namespace_shadow() -> None:
    rules = dict(default_rules())
    rules["tunnel"] = DetectorRule(scope="namespace", match="suffix", min_score=0.5)
    policy = VerdictPolicy(PolicySettings(rules=rules, shadow_namespaces=frozenset({"dev"})))
    prod = policy.decide(finding("tunnel", "evil.example", 0.9, ns="prod"))
    dev = policy.decide(finding("tunnel", "evil.example", 0.9, ns="dev"))
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
        VerdictPolicy().decide(finding("tunnel", "t.example", 0.2)).disposition == "below-threshold"
    )


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="action"):
        DetectorRule(action="drop-table")
    with pytest.raises(ValueError, match="scope"):
        DetectorRule(scope="planet")


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
    events = traffic.browsing(0, 120, 5, client="shop/web-1")
    bot = traffic.dga("cryptolocker", 60)
    events += [
        traffic.event(60 + i * 0.5, n, client="shop/infected", rcode="NXDOMAIN")
        for i, n in enumerate(bot)
    ]
    return sorted(events, key=lambda e: e.ts)


def test_pipeline_blocks_dga_and_is_deterministic(model) -> None:  # type: ignore[no-untyped-def]
    events = _attack_traffic()
    results = []
    for _ in range(2):
        p = Pipeline(model, allowlist=traffic.benign(1000))
        r = p.process(events[:300])
        r2 = p.process(events[300:])
        results.append(r.findings + r2.findings)
    assert results[0] == results[1]
    detectors = {f.detector for f in results[0]}
    assert {"dga", "nxdomain_storm"} <= detectors
    p = Pipeline(model, allowlist=traffic.benign(1000))
    decisions = p.process(events).decisions
    blocked = {d.verdict.name for d in decisions if d.verdict is not None}
    assert blocked  # DGA names from the infected pod are blocked
    assert blocked <= set(traffic.dga("cryptolocker", 60))
    assert not any(d.finding.client == "shop/web-1" and d.verdict for d in decisions)


def test_top_n_allowlist_leaves_tenants_of_shared_parents_blockable(shared_data: Path) -> None:
    # the default allowlist: the 10,000 most popular names of the ranking
    top = load_allowlist(shared_data / "benign_top.csv", 10_000)
    assert {"duckdns.org", "ddns.net", "blogspot.com", "github.io", "mooo.com"} <= set(top)
    policy = VerdictPolicy(allowlist=Allowlist(top))
    for name in ("qzkfhwpxl.duckdns.org", "qzkfhwpxl.ddns.net", "wreczn.mooo.com"):
        assert policy.decide(finding(name=name)).disposition == "blocked", name
    assert policy.decide(finding(name="www.google.com")).disposition == "allowlisted"
