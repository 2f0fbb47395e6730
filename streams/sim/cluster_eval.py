"""``dnsguard eval cluster``: detection judged on an hour of cluster traffic.

The traffic comes from :mod:`streams.sim.cluster` (v1 events, search-path
expansions, internal names, typos, punycode, CDN names, infected pods whose
DGA bursts end in one resolving name). Each event is decoded by the worker's
decoder and the batches go through the same :class:`detectors.pipeline.Pipeline`
the worker, replay and the demo run. The report says:

* infected pods named by the client-level detector, for random-character and
  word-list families, and how many DGA queries each pod sent before it was
  first named (median, max);
* healthy pods alerted, per detector and in all, and alerts per pod-hour;
* block verdicts on names that are not a DGA's (benign names, CDN names
  included), and the share of C2 names blocked;
* events per second through decode and pipeline.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detectors.dga import DgaModel
from detectors.events import DnsEvent, EventError
from detectors.infected import NAME as INFECTED
from detectors.pipeline import DetectorSettings, Pipeline
from streams.engine.step import step
from streams.ingest.decode import decode_event
from streams.sim.cluster import ClusterSpec, Truth, generate

BATCH = 2000
LIVE_BATCH = 50  # with --late: the small batches a live worker takes


@dataclass
class ClusterReport:
    spec: dict[str, Any]
    events: int
    pods: int
    infected_random: int
    infected_wordlist: int
    found_random: int
    found_wordlist: int
    queries_before_named_median: float | None
    queries_before_named_max: int | None
    healthy_pods: int
    healthy_alerted: int
    healthy_alerted_by_detector: dict[str, int]
    benign_block_verdicts: list[str]
    c2_names: int
    c2_blocked: int
    alerts: int
    alerts_by_detector: dict[str, int]
    alerts_per_pod_hour: float
    events_per_s: float
    generate_s: float
    missed: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    events: list[bytes],
    truth: Truth,
    model: DgaModel,
    spec: ClusterSpec,
    settings: DetectorSettings | None = None,
    allowlist: list[str] | None = None,
    generate_s: float = 0.0,
    batch_size: int = BATCH,
) -> ClusterReport:
    pipeline = Pipeline(model, settings or DetectorSettings(), allowlist or [])
    alerts: list[tuple[float, str, str]] = []  # (ts, client, detector)
    verdict_names: dict[str, set[str]] = defaultdict(set)  # name -> clients
    t0 = time.perf_counter()
    batch: list[DnsEvent] = []

    def flush(final: bool = False) -> None:
        out = step(pipeline, batch, final=final)
        for a in out.alerts:
            f = a.decision.finding
            alerts.append((f.ts, f.client, f.detector))
        for d in out.decisions:
            if d.verdict is not None:
                verdict_names[d.verdict.name].add(d.finding.client)
        batch.clear()

    for raw in events:
        try:
            batch.append(decode_event(raw))
        except (EventError, ValueError):
            continue
        if len(batch) >= batch_size:
            flush()
    flush(final=True)
    elapsed = time.perf_counter() - t0

    infected = truth.infected()
    healthy = [c for c in truth.pods if c not in infected]
    named_at: dict[str, float] = {}
    by_detector: dict[str, set[str]] = defaultdict(set)
    alerts_by_detector: Counter[str] = Counter()
    for ts, client, detector in alerts:
        alerts_by_detector[detector] += 1
        by_detector[detector].add(client)
        if detector == INFECTED and client not in named_at:
            named_at[client] = ts
    before = []
    missed = []
    for c in infected:
        pod = truth.pods[c]
        times = sorted(truth.dga_times.get(c, []))
        if c in named_at:
            before.append(sum(1 for t in times if t <= named_at[c]))
        else:
            missed.append({"client": c, "family": pod.family, "dga_queries": len(times)})
    healthy_set = set(healthy)
    all_dga = set().union(*truth.dga_names.values()) if truth.dga_names else set()
    benign_blocks = sorted(n for n in verdict_names if n not in all_dga)
    c2 = set().union(*truth.c2_names.values()) if truth.c2_names else set()
    hours = spec.duration_s / 3600
    random_pods = [c for c in infected if not truth.pods[c].wordlist]
    word_pods = [c for c in infected if truth.pods[c].wordlist]
    return ClusterReport(
        spec=asdict(spec),
        events=len(events),
        pods=len(truth.pods),
        infected_random=len(random_pods),
        infected_wordlist=len(word_pods),
        found_random=sum(1 for c in random_pods if c in named_at),
        found_wordlist=sum(1 for c in word_pods if c in named_at),
        queries_before_named_median=statistics.median(before) if before else None,
        queries_before_named_max=max(before) if before else None,
        healthy_pods=len(healthy),
        healthy_alerted=len({c for cs in by_detector.values() for c in cs} & healthy_set),
        healthy_alerted_by_detector={
            d: len(cs & healthy_set) for d, cs in sorted(by_detector.items())
        },
        benign_block_verdicts=benign_blocks,
        c2_names=len(c2),
        c2_blocked=len(c2 & set(verdict_names)),
        alerts=len(alerts),
        alerts_by_detector=dict(alerts_by_detector),
        alerts_per_pod_hour=len(alerts) / max(1, len(truth.pods)) / max(hours, 1e-9),
        events_per_s=len(events) / elapsed if elapsed else 0.0,
        generate_s=generate_s,
        missed=missed,
    )


def as_query_only(raw: bytes) -> bytes:
    """The event as the UDP module ships it: the response not observed."""
    ev = json.loads(raw)
    ev.update(transport="udp", response=None, response_observed=False, latency_us=None)
    return json.dumps(ev, separators=(",", ":")).encode()


def shipped(
    events: Sequence[DnsEvent], late_s: float, flush_s: float = 0.1
) -> list[tuple[float, int]]:
    """For each of ``events`` (in time order), when it reaches the worker and
    from which of an Envoy's two worker threads: each client's queries
    alternate between the threads, each thread ships what it has every
    ``flush_s``, and the second thread's batches arrive ``late_s`` after the
    first's. Events with the same (time, thread) travel in one batch."""
    sent: Counter[str] = Counter()
    out = []
    for ev in events:
        thread = sent[ev.client] % 2
        sent[ev.client] += 1
        out.append(((ev.ts // flush_s + 1) * flush_s + late_s * thread, thread))
    return out


def delivered(events: list[bytes], late_s: float) -> list[bytes]:
    """``events`` (in time order) in the order a worker receives them from
    Envoys with two worker threads (:func:`shipped`); what the decoder rejects
    comes first (it goes no further anyway)."""
    decoded: list[tuple[int, DnsEvent]] = []
    for i, raw in enumerate(events):
        try:
            decoded.append((i, decode_event(raw)))
        except (EventError, ValueError):
            continue
    when = dict(zip((i for i, _ in decoded), shipped([ev for _, ev in decoded], late_s),
                    strict=True))  # fmt: skip
    order = sorted(range(len(events)), key=lambda i: (*when.get(i, (0.0, 0)), i))
    return [events[i] for i in order]


def run(
    spec: ClusterSpec,
    data_dir: Path,
    model: DgaModel,
    settings: DetectorSettings | None = None,
    allowlist: list[str] | None = None,
    jsonl: Path | None = None,
    queries_only: bool = False,
    late_s: float = 0.0,
) -> ClusterReport:
    """The cluster hour through the detectors; ``queries_only``: as the UDP
    module ships it, every event's response not observed; ``late_s``: as
    Envoys with two worker threads deliver it, one thread's batches that much
    later than the other's (:func:`delivered`), in the small batches a live
    worker takes."""
    t0 = time.perf_counter()
    events, truth = generate(spec, data_dir)
    if queries_only:
        events = [as_query_only(e) for e in events]
    if late_s:
        events = delivered(events, late_s)
    generate_s = time.perf_counter() - t0
    if jsonl is not None:
        with jsonl.open("wb") as fh:
            fh.writelines(e + b"\n" for e in events)
        jsonl.with_suffix(".truth.json").write_text(json.dumps(truth.as_dict(), indent=1))
    return evaluate(events, truth, model, spec, settings, allowlist, generate_s,
                    LIVE_BATCH if late_s else BATCH)  # fmt: skip


def render(r: ClusterReport) -> str:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({a / b:.0%})" if b else "-"

    lines = [
        f"events: {r.events:,} from {r.pods} pods over {r.spec['duration_s'] / 3600:g} h "
        f"(generated in {r.generate_s:.1f}s; {r.events_per_s:,.0f} events/s through decode and pipeline)",
        f"infected pods named: random-character {pct(r.found_random, r.infected_random)}, "
        f"word-list {pct(r.found_wordlist, r.infected_wordlist)}",
        f"DGA queries before a pod is first named: median {r.queries_before_named_median}, "
        f"max {r.queries_before_named_max}",
        f"healthy pods alerted: {pct(r.healthy_alerted, r.healthy_pods)}; by detector "
        + (", ".join(f"{d} {n}" for d, n in r.healthy_alerted_by_detector.items() if n) or "none"),
        f"block verdicts on names that are not a DGA's: {len(r.benign_block_verdicts)}"
        + (f" ({', '.join(r.benign_block_verdicts[:5])})" if r.benign_block_verdicts else ""),
        f"C2 names blocked: {pct(r.c2_blocked, r.c2_names)}",
        f"alerts: {r.alerts} ({r.alerts_per_pod_hour:.3f} per pod-hour); by detector "
        + (", ".join(f"{d} {n}" for d, n in sorted(r.alerts_by_detector.items())) or "none"),
    ]
    for m in r.missed:
        lines.append(f"  not named: {m['client']} ({m['family']}, {m['dga_queries']} DGA queries)")
    return "\n".join(lines)
