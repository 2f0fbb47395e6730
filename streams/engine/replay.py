"""``dnsguard replay FILE``: the detector pipeline in-process, no Kafka, no Redis.

Input is a JSONL file of records of the events topic (v2 batches, as the
collector writes to Kafka and to its JSONL sink; JSON arrays of v1 events; v1
events) or a pcap/pcapng capture (DNS over UDP and TCP; queries are paired with responses by client, transaction id and
question). Alerts and verdicts are printed as a table and written as JSONL to
an output folder. Events that cannot be decoded are counted and written to
``rejected.jsonl`` with the reason as they come; nothing is silently dropped,
and nothing grows with the file's length (see ``KEEP_DECISIONS`` and
``MAX_PENDING``).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from detectors.events import Answer, DnsEvent, EventError, query_name
from detectors.pipeline import Pipeline
from detectors.verdicts import Decision
from streams.engine.step import step
from streams.ingest.decode import decode_record
from streams.ingest.pcap import read_dns

BATCH = 2000
KEEP_DECISIONS = 10_000  # decisions kept in memory for the caller's table; all are counted
MAX_PENDING = 100_000  # capture queries waiting for their response at most


@dataclass
class ReplayResult:
    events: int = 0
    rejected: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # alerted findings, by detector
    # the first decisions (at most ``keep``), for a table; alerts and verdicts
    # are all in the output folder
    decisions: list[Decision] = field(default_factory=list)
    decisions_total: int = 0
    names: Counter[str] = field(default_factory=Counter)  # events by what their name was


class Rejections:
    """Rejected events written to a JSONL file as they come (counted, not kept)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def append(self, entry: dict[str, str]) -> None:
        self.out.write(json.dumps(entry) + "\n")
        self.count += 1


class RejectSink(Protocol):
    def append(self, entry: dict[str, str], /) -> None: ...


def events_from_jsonl(path: Path, rejected: RejectSink) -> Iterator[DnsEvent]:
    """The events of a JSONL file whose lines are records of the events topic:
    v2 batches (what the collector writes), JSON arrays of v1 events, or v1
    events; a rejected event's ``line`` is ``N`` or, inside a batch, ``N[i]``."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            events, bad = decode_record(line)
            for r in bad:
                where = str(lineno) if r.position is None else f"{lineno}[{r.position}]"
                rejected.append({"line": where, "error": str(r.error)})
            yield from events


def events_from_pcap(path: Path, rejected: RejectSink, namespace: str = "") -> Iterator[DnsEvent]:
    """Events of a capture; its clients are IP addresses, in ``namespace`` if
    given (a capture carries no pod identity; without a namespace a verdict
    has no scope, so findings stay alerts). At most ``MAX_PENDING`` queries
    wait for their response; past that the oldest is reported unanswered."""
    # insertion-ordered: the oldest waiting query first
    pending: dict[tuple[str, int, str, int], tuple[float, str, str]] = {}
    for pkt in read_dns(path):
        try:
            msg = dns.message.from_wire(pkt.wire, ignore_trailing=False)
        except (dns.exception.DNSException, ValueError) as exc:
            rejected.append(
                {"packet": f"{pkt.src}->{pkt.dst}@{pkt.ts:.6f}", "error": type(exc).__name__}
            )
            continue
        if not msg.question:
            continue
        q = msg.question[0]
        try:
            name = query_name(q.name.to_text())
        except EventError as exc:
            rejected.append({"packet": f"{pkt.src}->{pkt.dst}@{pkt.ts:.6f}", "error": str(exc)})
            continue
        qtype = dns.rdatatype.to_text(q.rdtype)
        if not msg.flags & dns.flags.QR:
            key = (pkt.src[0], msg.id, name, int(q.rdtype))
            pending.pop(key, None)  # a retransmission waits from its latest copy
            pending[key] = (pkt.ts, name, qtype)
            if len(pending) > MAX_PENDING:
                old = next(iter(pending))
                ts, oname, otype = pending.pop(old)
                yield DnsEvent(ts, old[0], namespace, oname, otype, None)
            continue
        key = (pkt.dst[0], msg.id, name, int(q.rdtype))
        seen = pending.pop(key, None)
        ts = seen[0] if seen else pkt.ts
        answers = tuple(
            Answer(dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rd.to_text())
            for rrset in msg.answer
            for rd in rrset
        )
        rcode = dns.rcode.to_text(msg.rcode())
        yield DnsEvent(ts, pkt.dst[0], namespace, name, qtype, rcode, answers)
    for key, (ts, name, qtype) in pending.items():  # queries never answered in the capture
        yield DnsEvent(ts, key[0], namespace, name, qtype, None)


def replay(
    pipeline: Pipeline,
    path: Path,
    out_dir: Path,
    progress: bool = True,
    namespace: str = "",
    keep: int = KEEP_DECISIONS,
) -> ReplayResult:
    from rich.progress import Progress

    with path.open("rb") as fh:
        magic = fh.read(4)  # pcap (both byte orders, micro/nano) or pcapng
    is_pcap = magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x0a\x0d\x0d\x0a",
        b"\x4d\x3c\xb2\xa1",
    )
    result = ReplayResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        (out_dir / "rejected.jsonl").open("w", encoding="utf-8") as rejected_out,
        (out_dir / "alerts.jsonl").open("w", encoding="utf-8") as alerts,
        (out_dir / "verdicts.jsonl").open("w", encoding="utf-8") as verdicts,
        Progress(transient=True, disable=not progress) as bar,
    ):
        rejected = Rejections(rejected_out)
        source = (
            events_from_pcap(path, rejected, namespace)
            if is_pcap
            else events_from_jsonl(path, rejected)
        )
        size = path.stat().st_size
        task = bar.add_task(f"replaying {path.name}", total=size)

        def flush(batch: list[DnsEvent], final: bool = False) -> None:
            out = step(pipeline, batch, final=final)
            result.events += out.events
            result.names.update(out.names)
            result.findings.update(out.findings)
            verdicts.writelines(json.dumps(v.as_dict()) + "\n" for v in out.verdicts)
            for a in out.alerts:  # incidents: a new one, a new verdict, or a periodic update
                result.alerts[a.detector] += 1
                alerts.write(json.dumps(a.body) + "\n")
            room = keep - len(result.decisions)
            if room > 0:
                result.decisions.extend(out.decisions[:room])
            result.decisions_total += len(out.decisions)

        events = iter(source)
        while batch := list(itertools.islice(events, BATCH)):
            flush(batch)
            bar.update(task, completed=min(size, result.events * 200))
        flush([], final=True)
    result.rejected = rejected.count
    return result
