"""Embedded mode: the detector pipeline on captures and JSONL files, no Kafka or Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from detectors.pipeline import Pipeline
from models import artifact
from streams.engine.replay import replay
from streams.ingest.pcap import UnsupportedCapture
from streams.sim.workloads import Simulator

pytestmark = pytest.mark.unit
CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "captures"


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return artifact.load()[0]


def test_tunnel_capture_is_detected(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    capture = CAPTURES / "tunnels" / "dns2tcp-netrack-2018-03-23.pcap"
    # a capture has no namespaces: the tunnel is found, but a verdict has no scope
    unscoped = replay(Pipeline(model), capture, tmp_path / "unscoped", progress=False)
    tunnels = [d for d in unscoped.decisions if d.finding.detector == "tunnel"]
    assert tunnels
    assert all(d.disposition == "unscoped" and d.verdict is None for d in tunnels)
    # attributed to a namespace, the verdict is scoped to it
    result = replay(Pipeline(model), capture, tmp_path, progress=False, namespace="lab")
    assert result.events > 4000
    tunnels = [d for d in result.decisions if d.finding.detector == "tunnel"]
    assert tunnels
    assert tunnels[0].finding.name == "hidemyself.org"
    verdicts = [json.loads(x) for x in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert {(v["scope"], v["name"]) for v in verdicts} == {("ns:lab", "hidemyself.org")}
    alerts = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == len(result.decisions)


def test_every_zeek_and_suricata_capture_replays(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pcaps = sorted(p for p in CAPTURES.rglob("*.pcap") if "tunnels" not in p.parts)
    assert len(pcaps) >= 40
    total = 0
    unsupported = []
    for p in pcaps:
        try:
            total += replay(Pipeline(model), p, tmp_path / p.stem, progress=False).events
        except UnsupportedCapture:  # a link type the reader does not decode: named, not crashed on
            unsupported.append(p.name)
    assert unsupported == ["dns-inverse-query.pcap"]  # FDDI (link type 10)
    assert total >= 100  # ~300 DNS messages in these small test captures, paired into events


def test_jsonl_with_bad_lines_counts_them(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "events.jsonl"
    events = list(Simulator().events(time.time() - 30, 30))
    lines = [json.dumps(e) for e in events]
    lines.insert(5, "{broken")
    lines.insert(9, json.dumps({"v": 1}))
    src.write_text("\n".join(lines) + "\n")
    result = replay(Pipeline(model), src, tmp_path / "out", progress=False)
    assert result.events == len(events)
    assert result.rejected == 2
    assert len((tmp_path / "out" / "rejected.jsonl").read_text().splitlines()) == 2
    assert result.alerts["infected_client"] >= 1  # the simulated bot's pod is named


def test_batch_record_lines_read_like_their_events(tmp_path: Path) -> None:
    """A JSONL of batch records (arrays of v1 events, as in Kafka) gives the
    same events as the same events one per line; a bad element costs itself."""
    from streams.engine.replay import events_from_jsonl

    evs = list(Simulator().events(time.time() - 60, 5))[:6]
    flat, batched = tmp_path / "flat.jsonl", tmp_path / "batched.jsonl"
    flat.write_text("".join(json.dumps(e) + "\n" for e in evs))
    batched.write_text(json.dumps(evs[:3]) + "\n" + json.dumps([*evs[3:], {"v": 1}]) + "\n")
    rejected_flat: list[dict[str, str]] = []
    rejected_batched: list[dict[str, str]] = []
    assert list(events_from_jsonl(flat, rejected_flat)) == list(
        events_from_jsonl(batched, rejected_batched)
    )
    assert rejected_flat == []
    assert [r["line"] for r in rejected_batched] == ["2[3]"]


def test_replay_keeps_a_bounded_number_of_decisions_and_counts_them_all(
    model, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    capture = CAPTURES / "tunnels" / "dns2tcp-netrack-2018-03-23.pcap"
    full = replay(Pipeline(model), capture, tmp_path / "full", progress=False, namespace="lab")
    assert full.decisions_total == len(full.decisions) >= 1
    kept = replay(Pipeline(model), capture, tmp_path / "kept", progress=False, namespace="lab",
                  keep=0)  # fmt: skip
    assert kept.decisions == []
    assert kept.decisions_total == full.decisions_total
    # every alert is still written out
    written = (tmp_path / "kept" / "alerts.jsonl").read_text().splitlines()
    assert len(written) == len((tmp_path / "full" / "alerts.jsonl").read_text().splitlines())


def test_unanswered_capture_queries_wait_in_a_bounded_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.message

    from streams.engine import replay as replay_mod
    from streams.ingest.pcap import DnsPacket

    queries = [
        DnsPacket(
            float(i),
            "udp",
            ("10.0.0.1", 5000 + i),
            ("10.0.0.53", 53),
            dns.message.make_query(f"q{i}.example.com", "A", id=i).to_wire(),
        )
        for i in range(5)
    ]
    read = 0

    def read_dns(path: Path):  # type: ignore[no-untyped-def]
        nonlocal read
        for pkt in queries:
            read += 1
            yield pkt

    monkeypatch.setattr(replay_mod, "read_dns", read_dns)
    monkeypatch.setattr(replay_mod, "MAX_PENDING", 2)
    events = replay_mod.events_from_pcap(Path("unused.pcap"), [])
    # the third waiting query pushes the first out as unanswered, at once:
    # not after the whole capture is read
    first = next(events)
    assert (first.qname, first.rcode, read) == ("q0.example.com", None, 3)
    rest = list(events)
    # none answered: every query is an unanswered event, the oldest first
    assert [e.qname for e in [first, *rest]] == [f"q{i}.example.com" for i in range(5)]
    assert all(e.rcode is None for e in rest)
