"""The DGA detector: scores query names in batches and reports likely DGA names.

Scores come from a :class:`~detectors.dga.CachedScorer`; one finding per
registrable domain per ``cooldown_s``, naming the client that asked first.
NXDOMAIN answers raise confidence (bots try many names that do not exist),
which is carried in the evidence for the verdict policy and the analyst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.dga import CachedScorer
from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.names import split_name
from detectors.window import BoundedStates


@dataclass(frozen=True, slots=True)
class DgaSettings:
    threshold: float = 0.999
    cache_entries: int = 200_000
    cooldown_s: float = 3_600.0
    max_tracked: int = 100_000


class _Seen:
    __slots__ = ("last_alert",)

    def __init__(self) -> None:
        self.last_alert = -1e18


class DgaDetector:
    name = "dga"

    def __init__(self, scorer: CachedScorer, settings: DgaSettings | None = None) -> None:
        self.settings = s = settings or DgaSettings()
        self.scorer = scorer
        self.alerted: BoundedStates[str, _Seen] = BoundedStates(s.max_tracked, _Seen)

    def update_batch(self, events: Sequence[DnsEvent]) -> list[Finding]:
        if not events:
            return []
        scores = self.scorer.score_batch([ev.qname for ev in events])
        out: list[Finding] = []
        threshold = self.settings.threshold
        for i in np.flatnonzero(scores >= threshold).tolist():
            ev, score = events[i], float(scores[i])
            domain = split_name(ev.qname).registrable
            seen = self.alerted.get(domain)
            if ev.ts - seen.last_alert < self.settings.cooldown_s:
                continue
            seen.last_alert = ev.ts
            out.append(
                Finding(
                    detector=self.name,
                    ts=ev.ts,
                    client=ev.client,
                    namespace=ev.namespace,
                    name=domain,
                    score=round(score, 6),
                    summary=f"{ev.qname}: DGA score {score:.4f} >= {threshold} (asked by {ev.client})",
                    evidence={
                        "qname": ev.qname,
                        "registrable": domain,
                        "score": round(score, 6),
                        "threshold": threshold,
                        "rcode": ev.rcode,
                    },
                )
            )
        return out
