"""Incidents, not floods: one open incident per (client, detector) that grows.

A detector may find the same thing about a client again and again (a storm
goes on, a bot keeps walking its list). Each finding updates the client's
open incident for that detector (count, first and last seen, a few example
names, the strongest score); an alert goes out when the incident opens, when
a finding brings a verdict on a target the incident has not reported yet, and
otherwise at most once per ``realert_s``. An incident quiet for ``close_s``
closes; the next finding opens a new one. The table is bounded (least
recently updated incidents are dropped first).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding
from detectors.window import BoundedStates

MAX_EXAMPLES = 5
MAX_TARGETS = 16


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    realert_s: float = 1_800.0
    close_s: float = 3_600.0
    max_incidents: int = 100_000


@dataclass(slots=True)
class Incident:
    id: str
    client: str
    detector: str
    namespace: str
    first_seen: float
    last_seen: float
    findings: int = 0
    alerts: int = 0
    last_alert: float = -1e18
    max_score: float = 0.0
    examples: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # names a verdict was reported for

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "detector": self.detector,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "findings": self.findings,
            "alerts": self.alerts,
            "max_score": self.max_score,
            "examples": list(self.examples),
        }


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """An incident after a finding, and whether that finding is alerted."""

    incident: dict[str, Any]  # a snapshot, as the alert carries it
    alert: bool


def _incident_id(client: str, detector: str, first_seen: float) -> str:
    key = f"{client}\x00{detector}\x00{first_seen:.6f}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class Incidents:
    def __init__(self, settings: IncidentSettings | None = None) -> None:
        self.settings = s = settings or IncidentSettings()
        self._open: BoundedStates[tuple[str, str], Incident | None] = BoundedStates(
            s.max_incidents, lambda: None
        )
        # the detectors incidents were opened for: a handful of names, so a
        # client's incidents are found by key, one per detector
        self._detectors: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def dump(self, client: str) -> list[list[Any]] | None:
        """The client's open incidents as plain JSON, or None."""
        out = []
        for detector in self._detectors:
            inc = self._open.peek((client, detector))
            if inc is not None:
                out.append([inc.id, detector, inc.namespace, inc.first_seen, inc.last_seen,
                            inc.findings, inc.alerts, inc.last_alert, inc.max_score,
                            inc.examples, inc.targets])  # fmt: skip
        return out or None

    def forget(self, client: str) -> None:
        for detector in self._detectors:
            self._open.discard((client, detector))

    def load(self, client: str, data: list[list[Any]]) -> None:
        """The client's open incidents from :meth:`dump`'s snapshot."""
        for (uid, detector, namespace, first, last, findings, alerts, last_alert, score,
             examples, targets) in data:  # fmt: skip
            inc = Incident(str(uid), client, str(detector), str(namespace), float(first),
                           float(last), int(findings), int(alerts), float(last_alert),
                           float(score), [str(x) for x in examples[:MAX_EXAMPLES]],
                           [str(x) for x in targets[:MAX_TARGETS]])  # fmt: skip
            self._open.put((client, inc.detector), inc)
            self._detectors[inc.detector] = None

    def update(self, finding: Finding, verdict_target: str | None = None) -> IncidentUpdate:
        """Fold ``finding`` into its incident; ``verdict_target`` is the name a
        verdict was made for, if one was."""
        s = self.settings
        key = (finding.client, finding.detector)
        inc = self._open.get(key)
        if finding.detector not in self._detectors:
            self._detectors[finding.detector] = None
        ts = finding.ts
        if inc is None or ts - inc.last_seen > s.close_s:
            inc = Incident(
                _incident_id(finding.client, finding.detector, ts),
                finding.client,
                finding.detector,
                finding.namespace,
                ts,
                ts,
            )
            self._open.put(key, inc)
        inc.findings += 1
        inc.last_seen = max(inc.last_seen, ts)
        inc.max_score = max(inc.max_score, finding.score)
        example = finding.name or finding.evidence.get("qname")
        if (
            isinstance(example, str)
            and example not in inc.examples
            and len(inc.examples) < MAX_EXAMPLES
        ):
            inc.examples.append(example)
        alert = inc.alerts == 0 or ts - inc.last_alert >= s.realert_s
        if verdict_target is not None and verdict_target not in inc.targets:
            alert = True
            if len(inc.targets) < MAX_TARGETS:
                inc.targets.append(verdict_target)
        if alert:
            inc.alerts += 1
            inc.last_alert = ts
        return IncidentUpdate(inc.as_dict(), alert)
