"""The blocklist publisher's files: RPZ, plain list, STIX 2.1 (pure rendering; the
RPZ zone is also loaded into a real unbound in tests/integration/test_rpz_unbound.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.publish.blocklists import PublishOptions, publish, render_rpz, selected

pytestmark = pytest.mark.unit


def v(
    name: str,
    scope: str = "*",
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
        v("a.example.net"),
        v("shadow.example.net", action="shadow"),
        v("old.example.net", expires=10),
        v("ns.example.net", scope="ns:shop"),
    ]
    names = [e["name"] for e in selected(entries, PublishOptions(Path(".")), now=100)]
    assert names == ["a.example.net"]
    with_ns = selected(entries, PublishOptions(Path("."), namespace="shop"), now=100)
    assert [e["name"] for e in with_ns] == ["a.example.net", "ns.example.net"]


def test_rpz_maps_actions_and_covers_subdomains_of_suffix_verdicts() -> None:
    opts = PublishOptions(Path("."), sinkhole_a="192.0.2.1")
    zone = render_rpz(
        42,
        [
            v("a.example.net"),
            v("b.example.net", match="exact", action="refused"),
            v("c.example.net", action="sinkhole"),
        ],
        opts,
    ).decode()
    assert "@ SOA localhost. hostmaster.localhost. 42 " in zone
    assert "a.example.net CNAME .\n*.a.example.net CNAME .\n" in zone
    assert "b.example.net CNAME rpz-drop.\n" in zone
    assert "*.b.example.net" not in zone
    assert "c.example.net A 192.0.2.1\n" in zone


def test_publish_writes_three_files_atomically_and_stix_ids_are_stable(tmp_path: Path) -> None:
    opts = PublishOptions(tmp_path)
    first = publish(5, [v("a.example.net"), v("b.example.net")], opts, now=100)
    assert sorted(p.name for p in first.files) == [
        "dnsguard-domains.txt",
        "dnsguard.rpz",
        "dnsguard.stix.json",
    ]
    assert (tmp_path / "dnsguard-domains.txt").read_text().splitlines()[1:] == [
        "a.example.net",
        "b.example.net",
    ]
    bundle = json.loads((tmp_path / "dnsguard.stix.json").read_text())
    assert bundle["type"] == "bundle"
    assert len(bundle["objects"]) == 2
    ind = bundle["objects"][0]
    assert ind["spec_version"] == "2.1"
    assert ind["pattern"] == "[domain-name:value = 'a.example.net']"
    assert ind["pattern_type"] == "stix"
    assert ind["valid_until"].endswith("Z")
    assert ind["confidence"] == 100
    publish(6, [v("a.example.net")], opts, now=100)
    again = json.loads((tmp_path / "dnsguard.stix.json").read_text())
    assert again["objects"][0]["id"] == ind["id"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_invalid_entries_never_reach_a_file_and_the_rest_still_does(tmp_path: Path) -> None:
    forged = [
        v("zz\n+\td\t*\ts\tnxdomain\t0\tgoogle.com"),
        v("x y.example.net"),
        v("evil.example.net\n*.google.com CNAME ."),  # an RPZ record smuggled in a name
        v("it's.example.net"),
        v("com"),
        v("ddns.net"),
        v(""),
        v("x.svc.cluster.local"),
        v(("a" * 63 + ".") * 3 + "b" * 55 + ".net"),  # valid, but too long under the RPZ origin
        v("ok.example.net", scope="ns:a b"),
    ]
    good = v("a\\039b.example.net")  # a quote in a label, escaped as \\039
    result = publish(9, [*forged, good], PublishOptions(tmp_path), now=100)
    assert (result.names, result.skipped) == (1, len(forged))
    zone = (tmp_path / "dnsguard.rpz").read_text()
    records = [line for line in zone.splitlines() if line and not line.startswith((";", "$", "@"))]
    assert records == ["a\\039b.example.net CNAME .", "*.a\\039b.example.net CNAME ."]
    assert (tmp_path / "dnsguard-domains.txt").read_text().splitlines()[1:] == [
        "a\\039b.example.net"
    ]
    (ind,) = json.loads((tmp_path / "dnsguard.stix.json").read_text())["objects"]
    # a STIX pattern string escapes the backslash
    assert ind["pattern"] == "[domain-name:value = 'a\\\\039b.example.net']"


def test_publish_options_are_validated() -> None:
    with pytest.raises(ValueError, match="zone"):
        PublishOptions(Path("."), zone="rpz dnsguard.")
    with pytest.raises(ValueError, match="sinkhole_a"):
        PublishOptions(Path("."), sinkhole_a="192.0.2.1\n* CNAME .")
    with pytest.raises(ValueError, match="sinkhole_aaaa"):
        PublishOptions(Path("."), sinkhole_aaaa="192.0.2.1")
    assert PublishOptions(Path("."), zone="RPZ.Example.").zone == "rpz.example."


def test_all_namespaces_writes_one_set_per_namespace(tmp_path: Path) -> None:
    entries = [v("global.example.net"), v("shop-only.example.net", scope="ns:shop"),
               v("pay-only.example.net", scope="ns:payments"), v("x.example.net", scope="ns:Bad ns")]  # fmt: skip
    result = publish(3, entries, PublishOptions(tmp_path, all_namespaces=True), now=100)
    assert result.names == 1
    assert result.namespace_names == {"payments": 2, "shop": 2}
    shop = (tmp_path / "namespaces" / "shop" / "dnsguard-domains.txt").read_text().splitlines()[1:]
    assert shop == ["global.example.net", "shop-only.example.net"]
    assert not (tmp_path / "namespaces" / "Bad ns").exists()
