"""Synthetic DNS traffic for detector tests, built from the shared data files."""

from __future__ import annotations

import random
from pathlib import Path

from detectors.events import Answer, DnsEvent
from streams.sim.workloads import read_column

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _column(
    file: str, col: str, where: tuple[str, str] | None = None, limit: int = 5000
) -> list[str]:
    return read_column(DATA / file, col, where, limit)


def benign(limit: int = 2000) -> list[str]:
    return _column("benign_top.csv", "domain", limit=limit)


def dga(family: str, limit: int = 500) -> list[str]:
    return _column("dga_train.csv", "domain", ("family", family), limit)


def tunnel(tool: str, limit: int = 500) -> list[str]:
    return _column("tunnel_train.csv", "qname", ("tool", tool), limit)


def event(
    ts: float,
    qname: str,
    *,
    client: str = "shop/web-1",
    namespace: str = "shop",
    rcode: str | None = "NOERROR",
    qtype: str = "A",
    answers: tuple[Answer, ...] = (),
) -> DnsEvent:
    return DnsEvent(ts, client, namespace, qname, qtype, rcode, answers)


def browsing(
    start: float, seconds: float, qps: float, seed: int = 1, client: str = "shop/web-1"
) -> list[DnsEvent]:
    """Benign browsing: popular names, mostly answered, with typical subdomains."""
    rng = random.Random(seed)
    names = benign(3000)
    out = []
    n = int(seconds * qps)
    for i in range(n):
        base = names[min(int(rng.paretovariate(1.2)) - 1, len(names) - 1)]
        name = rng.choice(["", "www.", "api.", "cdn.", "static."]) + base
        rcode = "NXDOMAIN" if rng.random() < 0.02 else "NOERROR"
        ans = (
            (Answer("A", 300, f"93.184.{rng.randrange(256)}.{rng.randrange(256)}"),)
            if rcode == "NOERROR"
            else ()
        )
        out.append(event(start + i / qps, name, client=client, rcode=rcode, answers=ans))
    return out
