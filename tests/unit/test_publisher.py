"""The blocklist publisher's files: RPZ, plain list, STIX 2.1 (pure rendering; the
RPZ zone is also loaded into a real unbound in tests/integration/test_rpz_unbound.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.publisher import PublishOptions, publish, render_rpz, selected

pytestmark = pytest.mark.unit


def v(
    name: str,
    scope: str = "global",
    match: str = "suffix",
    action: str = "nxdomain",
    expires: float = 2e9,
) -> dict:
    return {
        "scope": scope, "name": name, "match": match, "action": action, "detector": "dga",
        "score": 0.998, "reason": "DGA-like", "created": 1.7e9, "expires": expires,
    }  # fmt: skip


def test_selection_keeps_live_blocking_entries_in_published_scopes() -> None:
    entries = [
        v("a.example"),
        v("shadow.example", action="shadow"),
        v("old.example", expires=10),
        v("ns.example", scope="ns:shop"),
    ]
    names = [e["name"] for e in selected(entries, PublishOptions(Path(".")), now=100)]
    assert names == ["a.example"]
    with_ns = selected(entries, PublishOptions(Path("."), namespace="shop"), now=100)
    assert [e["name"] for e in with_ns] == ["a.example", "ns.example"]


def test_rpz_maps_actions_and_covers_subdomains_of_suffix_verdicts() -> None:
    opts = PublishOptions(Path("."), sinkhole_a="192.0.2.1")
    zone = render_rpz(
        42,
        [
            v("a.example"),
            v("b.example", match="exact", action="refused"),
            v("c.example", action="sinkhole"),
        ],
        opts,
    ).decode()
    assert "@ SOA localhost. hostmaster.localhost. 42 " in zone
    assert "a.example CNAME .\n*.a.example CNAME .\n" in zone
    assert "b.example CNAME rpz-drop.\n" in zone
    assert "*.b.example" not in zone
    assert "c.example A 192.0.2.1\n" in zone


def test_publish_writes_three_files_atomically_and_stix_ids_are_stable(tmp_path: Path) -> None:
    opts = PublishOptions(tmp_path)
    first = publish(5, [v("a.example"), v("b.example")], opts, now=100)
    assert sorted(p.name for p in first.files) == [
        "dnsguard-domains.txt",
        "dnsguard.rpz",
        "dnsguard.stix.json",
    ]
    assert (tmp_path / "dnsguard-domains.txt").read_text().splitlines()[1:] == [
        "a.example",
        "b.example",
    ]
    bundle = json.loads((tmp_path / "dnsguard.stix.json").read_text())
    assert bundle["type"] == "bundle"
    assert len(bundle["objects"]) == 2
    ind = bundle["objects"][0]
    assert ind["spec_version"] == "2.1"
    assert ind["pattern"] == "[domain-name:value = 'a.example']"
    assert ind["pattern_type"] == "stix"
    assert ind["valid_until"].endswith("Z")
    assert ind["confidence"] == 100
    publish(6, [v("a.example")], opts, now=100)
    again = json.loads((tmp_path / "dnsguard.stix.json").read_text())
    assert again["objects"][0]["id"] == ind["id"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
