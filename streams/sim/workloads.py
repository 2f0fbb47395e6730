"""Simulated workloads as v1 DNS events: benign browsing and three kinds of trouble.

Used by ``dnsguard demo``, the integration tests and the benchmarks. Names come
from the shared data files: popular domains for browsing, a DGA family's names
for the infected pod, tunnelling query names for the exfiltrating pod. The
infected pod walks its DGA's list in bursts of ``DGA_BURST`` names; the last
name of each burst resolves (``Simulator.c2``: the bot's C2), the others are
answered NXDOMAIN, and the bot goes quiet for ``DGA_PAUSE_S`` (it has its
C2). ``dnsguard demo`` runs the whole system on these workloads;
``dnsguard eval cluster`` (``streams/sim/cluster.py``) generates a whole
cluster's DNS instead.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DGA_BURST = 20  # names per burst of the infected pod; the last one resolves
DGA_PAUSE_S = 15.0  # after its C2 resolves, the bot stays quiet this long


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_column(
    path: Path, col: str, where: tuple[str, str] | None = None, limit: int = 5000
) -> list[str]:
    out: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if where is None or row[where[0]] == where[1]:
                out.append(row[col])
                if len(out) >= limit:
                    break
    return out


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    pod: str
    ip: str
    kind: str  # "browsing", "dga", "tunnel", "nxstorm"
    qps: float
    transport: str = "udp"  # how the pod's stub resolver asks: "udp" or "tcp"


DEFAULT_WORKLOADS = (
    Workload("shop", "web-7d9f", "10.1.0.11", "browsing", 20),
    Workload("shop", "cart-55c2", "10.1.0.12", "browsing", 10),
    Workload("payments", "api-6b4d", "10.2.0.21", "browsing", 10),
    # Over UDP the module sees queries, not answers (Envoy 1.40), so these two
    # resolve over TCP: blocking a bot's C2 needs the answer that shows which of
    # its names resolved, and an NXDOMAIN storm needs the NXDOMAINs.
    Workload("payments", "batch-1f0a", "10.2.0.22", "dga", 4, "tcp"),
    Workload("analytics", "etl-9c3e", "10.3.0.31", "tunnel", 4),
    Workload("legacy", "cron-2a7b", "10.4.0.41", "nxstorm", 5, "tcp"),
)


class Simulator:
    def __init__(
        self, data_dir: Path = DEFAULT_DATA, seed: int = 7, dga_family: str = "cryptolocker"
    ):
        self.rng = random.Random(seed)
        self.benign = read_column(data_dir / "benign_top.csv", "domain", limit=5000)
        self.dga = read_column(data_dir / "dga_train.csv", "domain", ("family", dga_family), 2000)
        self.c2 = set(self.dga[DGA_BURST - 1 :: DGA_BURST])
        self.tunnel = read_column(data_dir / "tunnel_train.csv", "qname", ("tool", "dnscat2"), 2000)
        self._counters: dict[str, int] = {}

    def _next(self, key: str, items: list[str]) -> str:
        i = self._counters.get(key, 0)
        self._counters[key] = i + 1
        return items[i % len(items)]

    def gap(self, w: Workload, name: str) -> float:
        """Seconds from sending ``name`` to ``w``'s next query."""
        pause = DGA_PAUSE_S if w.kind == "dga" and name in self.c2 else 0.0
        return 1.0 / w.qps + pause

    def draw(self, w: Workload) -> tuple[str, str, str, list[dict[str, Any]]]:
        """The next query of workload ``w``: (name, type, expected rcode, answers)."""
        rng = self.rng
        if w.kind == "dga":
            name = self._next("dga", self.dga)
            if name in self.c2:
                return (
                    name,
                    "A",
                    "NOERROR",
                    [{"name": name, "type": "A", "ttl": 300, "data": "198.51.100.7"}],
                )
            return name, "A", "NXDOMAIN", []
        if w.kind == "tunnel":
            return self._next("tunnel", self.tunnel), "TXT", "NOERROR", []
        if w.kind == "nxstorm":
            base = self.benign[rng.randrange(200)]
            name = f"svc-{rng.randrange(10**6):06d}.{base}"
            return name, "A", "NXDOMAIN", []
        base = self.benign[min(int(rng.paretovariate(1.2)) - 1, len(self.benign) - 1)]
        name = rng.choice(["", "www.", "api.", "cdn.", "static."]) + base
        if rng.random() < 0.02:
            return name, "A", "NXDOMAIN", []
        ip = f"93.184.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return name, "A", "NOERROR", [{"name": name, "type": "A", "ttl": 300, "data": ip}]

    def events(
        self, start: float, duration_s: float, workloads: tuple[Workload, ...] = DEFAULT_WORKLOADS
    ) -> Iterator[dict[str, Any]]:
        """v1 events in time order over ``duration_s`` seconds from ``start``."""
        drawn: list[tuple[float, int, tuple[str, str, str, list[dict[str, Any]]]]] = []
        for i, w in enumerate(workloads):
            t = start + i * 1e-4
            while t < start + duration_s:
                query = self.draw(w)
                drawn.append((t, i, query))
                t += self.gap(w, query[0])
        drawn.sort(key=lambda d: (d[0], d[1]))
        for qid, (ts, i, (name, qtype, rcode, answers)) in enumerate(drawn):
            w = workloads[i]
            yield {
                "v": 1,
                "ts": rfc3339(ts),
                "node": {
                    "id": f"sidecar~{w.ip}~{w.pod}.{w.namespace}",
                    "cluster": w.pod.rsplit("-", 1)[0],
                    "namespace": w.namespace,
                    "workload": w.pod.rsplit("-", 1)[0],
                    "pod": w.pod,
                    "service_account": "default",
                },
                "client": {"ip": w.ip, "port": 40000 + qid % 20000},
                "transport": "tcp",
                "query": {
                    "id": qid % 65536,
                    "name": name,
                    "type": qtype,
                    "class": "IN",
                    "rd": True,
                    "cd": False,
                    "do": False,
                },
                "response": {
                    "rcode": rcode,
                    "aa": False,
                    "tc": False,
                    "ra": True,
                    "ad": False,
                    "answers": answers,
                    "min_ttl": min((a["ttl"] for a in answers), default=None),
                },
                "latency_us": 800 + self.rng.randrange(4000),
                "action": "allowed",
                "policy_version": 0,
            }


def popular_names(data_dir: Path, n: int) -> list[str]:
    """The ``n`` most popular benign names of the ranking."""
    return read_column(data_dir / "benign_top.csv", "domain", limit=n)


def confident_dga_names(data_dir: Path, n: int, seed: int = 7) -> list[str]:
    """``n`` DGA names (shuffled with ``seed``) that the shipped model scores at
    or above its block level: one resolving query is enough for a verdict."""
    from models import artifact

    names = read_column(data_dir / "dga_train.csv", "domain", limit=1_000_000)
    random.Random(seed).shuffle(names)
    model, _ = artifact.load()
    block = model.thresholds["block"]
    out: list[str] = []
    for start in range(0, len(names), 20_000):
        chunk = names[start : start + 20_000]
        scores = model.score_batch(chunk)
        out += [name for name, s in zip(chunk, scores, strict=True) if s >= block]
        if len(out) >= n:
            break
    return out[:n]
