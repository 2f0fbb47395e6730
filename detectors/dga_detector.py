"""Per-name DGA scores: evidence for the client-level detector, and a block
only for a name that is beyond doubt.

Every name that may count (not internal, not a search-path expansion) is
scored in batches by a :class:`~detectors.dga.CachedScorer`. A score at or
above ``evidence_threshold`` makes the name *DGA-like*: evidence that
:mod:`detectors.infected` weighs together with the rest of the client's
names. A single name is reported on its own only when it resolved, has never
been answered NXDOMAIN, is not under a hosting suffix, and its score clears
``block_threshold``, a far stricter bar; one finding per registrable domain
per ``cooldown_s``. The model card says which action each score level takes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.window import BoundedStates


@dataclass(frozen=True, slots=True)
class DgaSettings:
    # None: the thresholds calibrated with the model (its artifact's metadata)
    evidence_threshold: float | None = None
    block_threshold: float | None = None
    cache_entries: int = 200_000
    cooldown_s: float = 3_600.0
    max_tracked: int = 100_000
    max_nx_names: int = 200_000


class _Seen:
    __slots__ = ("last_alert",)

    def __init__(self) -> None:
        self.last_alert = -1e18


class DgaDetector:
    name = "dga"

    def __init__(self, settings: DgaSettings, evidence: float, block: float) -> None:
        self.settings = s = settings
        self.evidence_threshold = evidence
        self.block_threshold = block
        self.alerted: BoundedStates[str, _Seen] = BoundedStates(s.max_tracked, _Seen)
        # registrable domains ever answered NXDOMAIN (bounded, oldest forgotten)
        self.nx_names: OrderedDict[str, None] = OrderedDict()

    def saw_nxdomain(self, registrable: str) -> None:
        nx = self.nx_names
        nx[registrable] = None
        nx.move_to_end(registrable)
        if len(nx) > self.settings.max_nx_names:
            nx.popitem(last=False)

    def update(self, ev: DnsEvent, registrable: str, score: float) -> list[Finding]:
        """A resolved name of a kind that may be blocked on its score (public or
        dynamic-DNS), with its score."""
        if score < self.block_threshold or not ev.answers or ev.rcode != "NOERROR":
            return []
        if registrable in self.nx_names:
            return []
        seen = self.alerted.get(registrable)
        if ev.ts - seen.last_alert < self.settings.cooldown_s:
            return []
        seen.last_alert = ev.ts
        return [
            Finding(
                detector=self.name,
                ts=ev.ts,
                client=ev.client,
                namespace=ev.namespace,
                name=registrable,
                score=round(score, 6),
                summary=(
                    f"{ev.qname}: DGA score {score:.6f} >= {self.block_threshold:.6f}, "
                    f"resolved and never NXDOMAIN (asked by {ev.client})"
                ),
                evidence={
                    "qname": ev.qname,
                    "registrable": registrable,
                    "score": round(score, 6),
                    "threshold": self.block_threshold,
                    "rcode": ev.rcode,
                },
            )
        ]
