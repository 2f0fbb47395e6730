"""Per-client detector state in bytes, with default settings.

Drives the per-client detectors (NXDOMAIN storm, tunnelling per client and
parent, query rate) with browsing-like traffic from many clients and measures
the Python heap they hold with tracemalloc, against the same run with no
clients (the baseline). Global, client-independent state (the DGA score cache,
the per-namespace bloom filters, fast-flux per name) has its own bound and is
reported separately.

The same traffic through the whole pipeline gives each client's snapshot
(``Pipeline.dump_client``: what the worker writes to its changelog-backed
``client-state`` table after each batch), measured as compact JSON bytes.

Run: ``.venv/bin/python -m bench.bench_detector_memory``
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import tracemalloc
from pathlib import Path

from detectors.events import Answer, DnsEvent
from detectors.newdomain import NewlyObservedDomain
from detectors.nxdomain import NxdomainStorm
from detectors.pipeline import Pipeline
from detectors.rate import RateAnomaly
from detectors.tunnel import Tunneling
from models import artifact

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "detector_memory.json"
CLIENTS = 20_000
QUERIES_PER_CLIENT = 30
REPEATS = 3


def traffic(seed: int) -> list[DnsEvent]:
    rng = random.Random(seed)
    names = [
        line.split(",")[1].strip()
        for line in (DATA / "benign_top.csv").read_text().splitlines()[1:5001]
    ]
    events = []
    for q in range(QUERIES_PER_CLIENT):
        for c in range(CLIENTS):
            base = names[min(int(rng.paretovariate(1.1)) - 1, len(names) - 1)]
            name = rng.choice(["", "www.", "api.", "img.", "static."]) + base
            nx = rng.random() < 0.05
            events.append(
                DnsEvent(
                    ts=q * 2.0 + c / CLIENTS,
                    client=f"ns{c % 50}/pod-{c}",
                    namespace=f"ns{c % 50}",
                    qname=name,
                    qtype="A",
                    rcode="NXDOMAIN" if nx else "NOERROR",
                    answers=() if nx else (Answer("A", 300, "93.184.216.34"),),
                )
            )
    return events


def measure(events: list[DnsEvent]) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    detectors: list[NxdomainStorm | Tunneling | RateAnomaly] = [
        NxdomainStorm(),
        Tunneling(),
        RateAnomaly(),
    ]
    for ev in events:
        for d in detectors:
            d.update(ev)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del detectors
    return (after - before) / CLIENTS


def snapshot_sizes(events: list[DnsEvent]) -> list[int]:
    """Each client's snapshot after the traffic, in compact JSON bytes, sorted."""
    pipeline = Pipeline(artifact.load()[0])
    for i in range(0, len(events), 2000):
        pipeline.process(events[i : i + 2000])
    sizes = []
    for client in {ev.client for ev in events}:
        snapshot = pipeline.dump_client(client)
        sizes.append(len(json.dumps(snapshot, separators=(",", ":")).encode()))
    return sorted(sizes)


def main() -> None:
    events = traffic(1)
    per_client = [measure(events) for _ in range(REPEATS)]
    med = statistics.median(per_client)
    sizes = snapshot_sizes(events)
    snap = {"median": statistics.median(sizes), "p90": sizes[len(sizes) * 9 // 10],
            "max": sizes[-1]}  # fmt: skip
    nod = NewlyObservedDomain()
    bloom_bytes = 2 * nod.settings.capacity * 1.44 * 9.97 / 8  # two filters at 0.1% FPR
    print(f"{CLIENTS} clients x {QUERIES_PER_CLIENT} queries, default settings")
    print(
        f"per-client state (NXDOMAIN storm + tunnelling + rate): median {med:,.0f} bytes (target <= 2048)"
    )
    print(
        f"per-client changelog snapshot (whole pipeline, compact JSON): median "
        f"{snap['median']:,.0f} bytes, p90 {snap['p90']:,}, max {snap['max']:,} (target <= 1024)"
    )
    print(
        f"per-namespace newly-observed-domain filters: ~{bloom_bytes / 1e6:.1f} MB each (bound: max_scopes)"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "bench": "detector_memory",
                "clients": CLIENTS,
                "queries_per_client": QUERIES_PER_CLIENT,
                "bytes_per_client_median": med,
                "bytes_per_client_runs": per_client,
                "snapshot_bytes": snap,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
