"""Real captures (Zeek's test traces) replayed through Envoy over TCP, compared
field by field with the dns.log that Zeek's own test suite expects.

Each pcap's queries are sent through the filter; a replay upstream answers
with the recorded responses; the events read back from Kafka are compared with
Zeek's dns.log: query name, type, rcode, answers and TTLs. Every known
difference is listed in ``EXPLAINED`` with its reason. The malformed-message
corpus goes through Envoy as well, and must never trap the filter.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from streams.ingest.pcap import read_dns
from streams.sim.resolver import question_key
from tests.e2e.conftest import FilterRig, events_for

pytestmark = pytest.mark.e2e

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "captures"
ZEEK = CAPTURES / "zeek"

# pcap -> Zeek btest baseline holding its dns.log
CASES = {
    "dns-spf.pcap": "scripts.base.protocols.dns.spf",
    "dns-txt-multiple.pcap": "scripts.base.protocols.dns.multiple-txt-strings",
    "dns/dns-binds.pcap": "scripts.base.protocols.dns.binds",
    "dns/loc-29-trunc.pcap": "scripts.base.protocols.dns.loc",
    "dns/dns_notify2.pcap": "scripts.base.protocols.dns.notify",
    "dns/mdns-no-assoc.pcap": "scripts.base.protocols.dns.mdns-no-assoc",
    "dnssec/dnskey.pcap": "scripts.base.protocols.dns.dnskey",
    "dnssec/dnskey2.pcap": "scripts.base.protocols.dns.dns-key",
    "dnssec/nsec.pcap": "scripts.base.protocols.dns.nsec",
    "dnssec/nsec3param.pcap": "scripts.base.protocols.dns.nsec3param",
}

# Known, explained differences from Zeek's dns.log.
EXPLAINED = {
    "case": "dnsguard lower-cases names (DNS names compare case-insensitively; the v1 schema says so); Zeek keeps the case on the wire",
    "rich-rdata": "Zeek prints some record types as a summary ('TXT 19 v=spf1 ...', 'RRSIG 5 upenn.edu', 'DNSKEY 5', 'LOC: ...'); "
    "dnsguard gives the RDATA in presentation form (or RFC 3597 \\# form for types it does not decode), so for those types only the type and TTL are compared",
    "any": "Zeek names QTYPE 255 '*'; dnsguard names it 'ANY'",
    "no-query": "a response with no query in the capture is logged by Zeek from the response alone; the filter only emits events for queries it saw",
    "unpaired": "when Zeek cannot associate a response with its query (mDNS on other 5-tuples) it logs a query-only row (rcode '-') and "
    "a response row; the filter pairs by connection and transaction id, so it has one event: it is compared with the response row",
    "unknown-type": "Zeek names types it does not know 'query-N'; dnsguard uses the RFC 3597 name 'TYPEN'",
    "no-qtype": "older baselines log '-' for the query type of some rows; any type is accepted there",
}
PLAIN_TYPES = {"A", "AAAA", "CNAME", "PTR", "NS", "DNAME"}


def zeek_rows(baseline: str) -> list[dict[str, str]]:
    text = (ZEEK / "baselines" / baseline / "dns.log").read_text()
    fields: list[str] = []
    rows = []
    for line in text.splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=False)))
    return rows


def framed(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def presentation_name(wire: bytes) -> str | None:
    """The first question's name as the filter writes it (lower case, odd bytes as \\DDD)."""
    pos, labels = 12, []
    while pos < len(wire):
        n = wire[pos]
        if n == 0:
            return ".".join(labels)
        if n & 0xC0:
            return None
        label = ""
        for b in wire[pos + 1 : pos + 1 + n].lower():
            c = chr(b)
            label += c if (c.isascii() and c.isalnum()) or c in "-_*" else f"\\{b:03d}"
        labels.append(label)
        pos += 1 + n
    return None


def replay(rig: FilterRig, pcap: Path) -> set[str]:
    """Send the capture's queries through Envoy; return their names."""
    packets = list(read_dns(pcap))
    for p in packets:
        if len(p.wire) >= 12 and p.wire[2] & 0x80 and (key := question_key(p.wire)) is not None:
            rig.upstream.recorded[key] = p.wire
    queries = [p.wire for p in packets if len(p.wire) >= 12 and not p.wire[2] & 0x80]
    names = set()
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        s.settimeout(3)
        for q in queries:
            s.sendall(framed(q))
            head = s.recv(2)
            (n,) = struct.unpack("!H", head)
            got = b""
            while len(got) < n:
                got += s.recv(n - len(got))
            name = presentation_name(q)
            if name is not None:
                names.add(name)
    return names


def zeek_answers(row: dict[str, str]) -> list[str]:
    return [] if row["answers"] in ("-", "(empty)") else row["answers"].split(",")


def zeek_ttls(row: dict[str, str]) -> list[int]:
    return (
        [] if row["TTLs"] in ("-", "(empty)") else [round(float(t)) for t in row["TTLs"].split(",")]
    )


@pytest.mark.parametrize("pcap", sorted(CASES))
def test_capture_matches_zeek(rig: FilterRig, pcap: str) -> None:
    rows = [r for r in zeek_rows(CASES[pcap]) if r["query"] not in ("-", "")]
    names = replay(rig, ZEEK / "traces" / pcap)
    got = events_for(rig.bootstrap, rig.topic, names, timeout=20)
    assert set(got) == names
    compared = 0
    for row in rows:
        if row["rcode_name"] == "-":  # EXPLAINED["unpaired"]: a query-only row
            assert row["query"].lower() in got, f"{pcap}: no event for query {row['query']}"
            compared += 1
            continue
        qname = row["query"].lower()  # EXPLAINED["case"]
        qtype = row["qtype_name"]
        qtype = {"*": "ANY"}.get(qtype, qtype)  # EXPLAINED["any"]
        if qtype.startswith("query-"):
            qtype = "TYPE" + qtype.removeprefix("query-")  # EXPLAINED["unknown-type"]
        candidates = [
            e
            for e in got.get(qname, [])
            if e["response"] is not None
            and qtype in ("-", e["query"]["type"])  # EXPLAINED["no-qtype"]
        ]
        if not candidates:
            assert qname not in names, (
                f"{pcap}: no answered event for {qname} {qtype}"
            )  # EXPLAINED["no-query"]
            continue
        ev = candidates[0]
        assert ev["response"]["rcode"] == row["rcode_name"], (pcap, qname)
        answers = ev["response"]["answers"]
        assert [a["ttl"] for a in answers] == zeek_ttls(row), (pcap, qname)
        for ours, theirs in zip(answers, zeek_answers(row), strict=True):
            if ours["type"] in PLAIN_TYPES:
                assert ours["data"] == theirs.lower(), (pcap, qname)
        compared += 1
    assert compared >= 1, f"{pcap}: nothing compared"


def test_malformed_corpus_passes_through_envoy_without_trapping(rig: FilterRig) -> None:
    files = sorted(p for p in (CAPTURES / "wire").rglob("*") if p.is_file() and p.suffix != ".json")
    assert len(files) >= 200
    before = rig.envoy.stats().get("parse_errors", 0)
    with socket.create_connection(("127.0.0.1", rig.ports.dns_tcp), timeout=5) as s:
        for f in files:
            s.sendall(framed(f.read_bytes()[:65535]))
        deadline = time.monotonic() + 15
        while rig.envoy.stats().get("parse_errors", 0) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
    assert rig.envoy.stats()["parse_errors"] > before
    # the filter is alive and still answering through the same Envoy
    import dns.message
    import dns.query

    r = dns.query.tcp(
        dns.message.make_query("after-corpus.example.com", "A"),
        "127.0.0.1",
        port=rig.ports.dns_tcp,
        timeout=5,
    )
    assert r.answer
    log = rig.envoy.log_path.read_text()
    assert "panicked" not in log
    assert "wasm trap" not in log.lower()
