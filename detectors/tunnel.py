"""DNS tunnelling / exfiltration per (client, parent domain).

Tunnels carry data in the labels left of a parent domain they control, so one
client sends many long, high-entropy, never-repeating subdomains of one
parent within a minute, often asking TXT, NULL or CNAME records. The detector
keeps, per (client, registrable parent): subdomain bytes, queries, the
entropy and length of subdomains, distinct subdomains and the share of
TXT/NULL/CNAME queries, over a sliding window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.names import SplitName, split_name
from detectors.window import BoundedStates, DistinctEstimator, SlidingCounts, stable_hash

_QUERIES, _BYTES, _ENTROPY_MILLI, _LONG, _DATA_TYPES = range(5)
_METRICS = 5
DATA_QTYPES = frozenset({"TXT", "NULL", "CNAME", "MX", "SRV", "ANY"})


# c * log2(c) for every count a character can have in a name (an escaped
# name is at most 4 * 256 + 1 characters long: detectors.dnsname)
_C_LOG2_C = [0.0] + [c * math.log2(c) for c in range(1, 1100)]


def label_entropy(text: str) -> float:
    """Shannon entropy in bits per character of ``text`` (dots ignored)."""
    chars = text.replace(".", "")
    n = len(chars)
    if not n:
        return 0.0
    # -sum(c/n * log2(c/n)) over the characters' counts c = log2(n) - sum(c * log2(c)) / n
    return max(0.0, math.log2(n) - sum(map(_C_LOG2_C.__getitem__, Counter(chars).values())) / n)


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    window_s: float = 60.0
    buckets: int = 6
    min_queries: int = 30
    min_bytes_per_window: int = 1200  # subdomain bytes per window
    min_distinct: int = 25
    min_mean_entropy: float = 3.0
    long_label: int = 24
    # Subdomains shorter than this carry too little to tunnel (www, api, img...);
    # they are not tracked at all, which keeps per-client state small.
    min_subdomain_len: int = 12
    distinct_bits: int = 512
    max_keys: int = 200_000
    cooldown_s: float = 300.0


class _PairState:
    __slots__ = ("counts", "distinct", "last_alert")

    def __init__(self, buckets: int) -> None:
        self.counts = SlidingCounts(_METRICS, buckets)
        self.distinct = DistinctEstimator()
        self.last_alert = -1e18


class Tunneling:
    name = "tunnel"

    def __init__(self, settings: TunnelSettings | None = None) -> None:
        self.settings = s = settings or TunnelSettings()
        self.pairs: BoundedStates[tuple[str, str], _PairState] = BoundedStates(
            s.max_keys, lambda: _PairState(s.buckets)
        )
        # the parents each client has a window for (for snapshots); bounded like
        # the pairs, and a parent whose pair was evicted is dropped when dumped
        self.parents_of: BoundedStates[str, dict[str, None]] = BoundedStates(s.max_keys, dict)

    MAX_DUMPED = 8  # parents per client in a snapshot: the most recent windows

    def dump(self, client: str) -> list[Any] | None:
        """The client's windows (one per parent) as plain JSON, or None."""
        parents = self.parents_of.peek(client)
        if not parents:
            return None
        out = []
        for parent in list(parents):
            st = self.pairs.peek((client, parent))
            if st is None:
                del parents[parent]
                continue
            out.append([parent, st.counts.dump(), st.distinct.dump(), st.last_alert])
        return out[-self.MAX_DUMPED :] or None

    def forget(self, client: str) -> None:
        for parent in self.parents_of.peek(client) or ():
            self.pairs.discard((client, parent))
        self.parents_of.discard(client)

    def load(self, client: str, data: list[Any]) -> None:
        parents = self.parents_of.get(client)
        for parent, counts, distinct, last_alert in data:
            st = _PairState(self.settings.buckets)
            st.counts.load(counts)
            st.distinct.load(distinct)
            st.last_alert = float(last_alert)
            self.pairs.put((client, str(parent)), st)
            parents[str(parent)] = None

    def update(self, ev: DnsEvent) -> list[Finding]:
        return self.update_many([ev], [split_name(ev.qname)])

    def update_many(self, events: Sequence[DnsEvent], splits: Sequence[SplitName]) -> list[Finding]:
        """Events in time order per client, with their names split."""
        shortest = self.settings.min_subdomain_len
        out: list[Finding] = []
        for ev, split in zip(events, splits, strict=True):
            if len(split.subdomain) >= shortest and split.label:
                found = self._track(ev, split)
                if found:
                    out += found
        return out

    def _track(self, ev: DnsEvent, split: SplitName) -> list[Finding]:
        """An event whose subdomain is long enough to carry data."""
        s = self.settings
        sub = split.subdomain
        parent = split.registrable
        key = (ev.client, parent)
        fresh = self.pairs.peek(key) is None
        st = self.pairs.get(key)
        if fresh:
            known = self.parents_of.get(ev.client)
            known[parent] = None
            if len(known) > 4 * self.MAX_DUMPED:
                for old in list(known)[: len(known) - 2 * self.MAX_DUMPED]:
                    del known[old]
        b = s.buckets
        slot = st.counts.advance(ev.ts, s.window_s / b, b)
        c = st.counts
        c.add(_QUERIES, slot, b)
        c.add(_BYTES, slot, b, len(sub))
        c.add(_ENTROPY_MILLI, slot, b, int(label_entropy(sub) * 1000))
        longest = max(len(label) for label in sub.split("."))
        if longest >= s.long_label:
            c.add(_LONG, slot, b)
        if ev.qtype in DATA_QTYPES:
            c.add(_DATA_TYPES, slot, b)
        st.distinct.add(stable_hash(sub), ev.ts, s.window_s, s.distinct_bits)

        queries = c.total(_QUERIES, b)
        if queries < s.min_queries or ev.ts - st.last_alert < s.cooldown_s:
            return []
        volume = c.total(_BYTES, b)
        distinct = st.distinct.estimate(s.distinct_bits)
        mean_entropy = c.total(_ENTROPY_MILLI, b) / 1000 / queries
        if volume < s.min_bytes_per_window or distinct < s.min_distinct:
            return []
        if mean_entropy < s.min_mean_entropy:
            return []
        st.last_alert = ev.ts
        long_share = c.total(_LONG, b) / queries
        data_share = c.total(_DATA_TYPES, b) / queries
        score = min(
            1.0,
            0.4 * min(1.0, volume / (4 * s.min_bytes_per_window))
            + 0.3 * min(1.0, (mean_entropy - 2.5) / 2.0)
            + 0.15 * long_share
            + 0.15 * data_share,
        )
        return [
            Finding(
                detector=self.name,
                ts=ev.ts,
                client=ev.client,
                namespace=ev.namespace,
                name=parent,
                score=round(score, 4),
                summary=(
                    f"{ev.client} -> *.{parent}: {queries} queries, {volume} subdomain bytes, "
                    f"~{distinct:.0f} distinct subdomains in {s.window_s:.0f}s, "
                    f"entropy {mean_entropy:.2f} bits/char"
                ),
                evidence={
                    "parent": parent,
                    "queries": queries,
                    "subdomain_bytes": volume,
                    "distinct_subdomains": round(distinct),
                    "mean_entropy": round(mean_entropy, 3),
                    "long_label_share": round(long_share, 3),
                    "data_qtype_share": round(data_share, 3),
                    "window_s": s.window_s,
                    "example": ev.qname[:255],
                },
            )
        ]
