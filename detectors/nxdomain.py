"""NXDOMAIN storm per client: many failed lookups of many distinct names.

A DGA-infected host walks its candidate list and most names do not exist, so
its NXDOMAIN count, NXDOMAIN ratio and distinct failed names all jump within
a minute. Evidence carries the counts and the parent domains most failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.names import SplitName, split_name
from detectors.window import BoundedStates, DistinctEstimator, SlidingCounts, stable_hash

_TOTAL, _NX = 0, 1


@dataclass(frozen=True, slots=True)
class NxdomainSettings:
    window_s: float = 60.0
    buckets: int = 6
    min_nxdomain: int = 20
    min_ratio: float = 0.5
    min_distinct: int = 15
    distinct_bits: int = 512
    top_parents: int = 5
    max_clients: int = 100_000
    cooldown_s: float = 300.0


class _ClientState:
    __slots__ = ("counts", "distinct", "last_alert", "parents")

    def __init__(self, buckets: int) -> None:
        self.counts = SlidingCounts(2, buckets)
        self.distinct = DistinctEstimator()
        self.parents: dict[str, int] = {}
        self.last_alert = -1e18


class NxdomainStorm:
    name = "nxdomain_storm"

    def __init__(self, settings: NxdomainSettings | None = None) -> None:
        self.settings = s = settings or NxdomainSettings()
        self.clients: BoundedStates[str, _ClientState] = BoundedStates(
            s.max_clients, lambda: _ClientState(s.buckets)
        )

    def dump(self, client: str) -> list[Any] | None:
        """The client's window as plain JSON (a changelog snapshot), or None."""
        st = self.clients.peek(client)
        if st is None:
            return None
        return [st.counts.dump(), st.distinct.dump(), st.parents, st.last_alert]

    def forget(self, client: str) -> None:
        self.clients.discard(client)

    def load(self, client: str, data: list[Any]) -> None:
        """The client's window from :meth:`dump`'s snapshot."""
        counts, distinct, parents, last_alert = data
        st = _ClientState(self.settings.buckets)
        st.counts.load(counts)
        st.distinct.load(distinct)
        st.parents = {str(k): int(v) for k, v in parents.items()}
        st.last_alert = float(last_alert)
        self.clients.put(client, st)

    def update(self, ev: DnsEvent) -> list[Finding]:
        return self.update_many([ev], [split_name(ev.qname)])

    def update_many(self, events: Sequence[DnsEvent], splits: Sequence[SplitName]) -> list[Finding]:
        """Events in time order per client (a client's events best together:
        its state is looked up once a run), with their names split."""
        s = self.settings
        b = s.buckets
        bucket_s = s.window_s / b
        out: list[Finding] = []
        client = ""
        st: _ClientState | None = None
        last = slot = -1
        for ev, split in zip(events, splits, strict=True):
            rcode = ev.rcode
            if rcode is None:
                continue
            if st is None or ev.client != client:
                client, last = ev.client, -1
                st = self.clients.get(client)
            idx = int(ev.ts // bucket_s)
            if idx != last:  # the window moves at most once a bucket
                slot, last = st.counts.advance(ev.ts, bucket_s, b), idx
            st.counts.add(_TOTAL, slot, b)
            if rcode == "NXDOMAIN":
                found = self._nxdomain(ev, st, slot, split.registrable)
                if found:
                    out += found
        return out

    def _nxdomain(self, ev: DnsEvent, st: _ClientState, slot: int, parent: str) -> list[Finding]:
        s = self.settings
        st.counts.add(_NX, slot, s.buckets)
        st.distinct.add(stable_hash(ev.qname), ev.ts, s.window_s, s.distinct_bits)
        parents = st.parents
        parents[parent] = parents.get(parent, 0) + 1
        if len(parents) > 4 * s.top_parents:
            # keep the heaviest parents only: bounded, and still a fair top-k
            keep = sorted(parents.items(), key=lambda kv: -kv[1])[: 2 * s.top_parents]
            st.parents = dict(keep)
        nx = st.counts.total(_NX, s.buckets)
        total = st.counts.total(_TOTAL, s.buckets)
        if nx < s.min_nxdomain or ev.ts - st.last_alert < s.cooldown_s:
            return []
        ratio = nx / max(total, 1)
        distinct = st.distinct.estimate(s.distinct_bits)
        if ratio < s.min_ratio or distinct < s.min_distinct:
            return []
        st.last_alert = ev.ts
        top = sorted(st.parents.items(), key=lambda kv: (-kv[1], kv[0]))[: s.top_parents]
        st.parents = {}
        score = min(1.0, 0.5 * ratio + 0.5 * min(1.0, distinct / (4 * s.min_distinct)))
        return [
            Finding(
                detector=self.name,
                ts=ev.ts,
                client=ev.client,
                namespace=ev.namespace,
                name=None,
                score=round(score, 4),
                summary=(
                    f"{ev.client}: {nx} NXDOMAIN of {total} answers in {s.window_s:.0f}s "
                    f"({ratio:.0%}), ~{distinct:.0f} distinct names"
                ),
                evidence={
                    "nxdomain": nx,
                    "answers": total,
                    "ratio": round(ratio, 4),
                    "distinct_names": round(distinct),
                    "window_s": s.window_s,
                    "top_parents": [{"domain": d, "nxdomain": c} for d, c in top],
                },
            )
        ]
