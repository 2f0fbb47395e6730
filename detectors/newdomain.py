"""Newly observed domains per scope (namespace), with time-rotated bloom filters.

Each scope keeps two pybloom-live filters, *current* and *previous*; a name is
"seen" if either holds it. Every ``rotate_s`` the previous filter is dropped
and the current one becomes previous, so a name not queried for two periods
is forgotten. ``error_rate`` is the false-positive rate of one filter at
``capacity`` names (a false positive hides a new domain; it never invents
one). During the first period of a scope everything is new, so no findings
are emitted until it has been observed for ``warmup_s``. A name found only
in *previous* is added to *current*, so a name queried every period is never
forgotten.

Most queries are for names asked a moment ago, and a bloom lookup hashes the
name several times; a bounded LRU of (scope, name) pairs known to be in the
current filter answers those without touching the filters.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from pybloom_live import BloomFilter

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.names import SplitName, split_name
from detectors.window import BoundedStates


@dataclass(frozen=True, slots=True)
class NewDomainSettings:
    capacity: int = 200_000
    error_rate: float = 0.001
    rotate_s: float = 86_400.0
    warmup_s: float = 3_600.0
    max_scopes: int = 64
    recent: int = 20_000  # LRU of (scope, name) pairs known to be in the current filter


_tokens = itertools.count()


class _ScopeFilters:
    __slots__ = ("current", "epoch", "first_seen", "previous", "token")

    def __init__(self, capacity: int, error_rate: float) -> None:
        self.token = next(_tokens)  # tells a scope from an evicted one of the same name
        self.current = BloomFilter(capacity=capacity, error_rate=error_rate)
        self.previous: BloomFilter | None = None
        self.epoch = -1
        self.first_seen = -1.0


class NewlyObservedDomain:
    name = "new_domain"

    def __init__(self, settings: NewDomainSettings | None = None) -> None:
        self.settings = s = settings or NewDomainSettings()
        self.scopes: BoundedStates[str, _ScopeFilters] = BoundedStates(
            s.max_scopes, lambda: _ScopeFilters(s.capacity, s.error_rate)
        )
        # (scope, name) -> (filters token, epoch) when the name went into that
        # current filter; stale once the scope rotates or is evicted.
        self.recent: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()

    def _rotate(self, st: _ScopeFilters, ts: float) -> None:
        s = self.settings
        epoch = int(ts // s.rotate_s)
        if st.epoch < 0:
            st.epoch, st.first_seen = epoch, ts
        elif epoch > st.epoch:
            st.previous = st.current if epoch == st.epoch + 1 else None
            st.current = BloomFilter(capacity=s.capacity, error_rate=s.error_rate)
            st.epoch = epoch

    def update(self, ev: DnsEvent) -> list[Finding]:
        return self.update_many([ev], [split_name(ev.qname)])

    def update_many(self, events: Sequence[DnsEvent], splits: Sequence[SplitName]) -> list[Finding]:
        """Events in time order, with their names split."""
        out: list[Finding] = []
        rotate_s = self.settings.rotate_s
        scopes: dict[str, _ScopeFilters] = {}  # this batch's namespaces, each looked up once
        for ev, split in zip(events, splits, strict=True):
            rcode = ev.rcode
            if rcode is None or rcode == "NXDOMAIN" or not split.registrable:
                continue  # only names that exist are "observed"
            st = scopes.get(ev.namespace)
            if st is None:
                if len(scopes) >= self.scopes.max_keys - 1:
                    scopes.clear()  # those got first may be evicted by the next: get them again
                st = scopes[ev.namespace] = self.scopes.get(ev.namespace)
            if int(ev.ts // rotate_s) != st.epoch:
                self._rotate(st, ev.ts)
            found = self._observe(ev, split.registrable, st)
            if found:
                out += found
        return out

    def _observe(self, ev: DnsEvent, domain: str, st: _ScopeFilters) -> list[Finding]:
        """A name that exists, asked from ``st``'s namespace (rotated to ``ev``'s time)."""
        key = (ev.namespace, domain)
        recent = self.recent
        if recent.get(key) == (st.token, st.epoch):
            recent.move_to_end(key)
            return []
        seen = domain in st.current
        if not seen:
            seen = st.previous is not None and domain in st.previous
            if len(st.current) >= st.current.capacity:
                return [] if seen else self._finding(ev, domain, st)
            st.current.add(domain)
        recent[key] = (st.token, st.epoch)
        recent.move_to_end(key)
        if len(recent) > self.settings.recent:
            recent.popitem(last=False)
        return [] if seen else self._finding(ev, domain, st)

    def _finding(self, ev: DnsEvent, domain: str, st: _ScopeFilters) -> list[Finding]:
        if ev.ts - st.first_seen < self.settings.warmup_s:
            return []
        return [
            Finding(
                detector=self.name,
                ts=ev.ts,
                client=ev.client,
                namespace=ev.namespace,
                name=domain,
                score=0.3,
                summary=f"{domain}: first query in namespace {ev.namespace or '-'} (by {ev.client})",
                evidence={"domain": domain, "scope": ev.namespace, "qname": ev.qname},
            )
        ]
