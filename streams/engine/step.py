"""One batch of events through detection, with no I/O: the step the worker,
``dnsguard replay``, ``dnsguard eval cluster`` and the benchmarks all take.

``step(pipeline, events)`` orders the batch by time, runs the detector
pipeline and renders what comes out: alerts (with their stable ids, in the
configured format), verdicts, and the counts the callers turn into metrics or
tables. The pipeline object is the state carried from one step to the next
(detector windows, incidents, caches, all bounded); the step itself touches no
Kafka, Redis or file, so what a batch yields is the same wherever it runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from detectors.events import DnsEvent
from detectors.pipeline import Pipeline
from detectors.verdicts import Decision, Verdict
from streams.engine.alerts import alert_id, ecs_alert, ocsf_alert

AlertFormat = Literal["ocsf", "ecs"]
_TS = attrgetter("ts")
RENDERERS: dict[str, Callable[[Decision, dict[str, Any] | None], dict[str, Any]]] = {
    "ocsf": ocsf_alert,
    "ecs": ecs_alert,
}


@dataclass(frozen=True, slots=True)
class Alert:
    uid: str  # stable per incident and update: the de-duplication key
    detector: str
    body: dict[str, Any]  # OCSF 4003 or ECS
    decision: Decision


@dataclass(slots=True)
class StepOutput:
    events: int = 0
    alerts: list[Alert] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    findings: Counter[str] = field(default_factory=Counter)  # by detector
    verdict_actions: Counter[str] = field(default_factory=Counter)
    names: Counter[str] = field(default_factory=Counter)  # events by what their name is
    late: Counter[str] = field(default_factory=Counter)  # by detector: events too late to count


def step(
    pipeline: Pipeline,
    events: list[DnsEvent],
    alert_format: AlertFormat = "ocsf",
    final: bool = False,
    clock: float | None = None,
) -> StepOutput:
    """``events`` (sorted here by time) through ``pipeline``; see the module doc.
    ``final``: the input ends with this batch (a replay's last; the worker's
    input never ends), so nothing is held back for time order. ``clock``: the
    time now, which moves held events on when a live input is quiet (see
    ``Pipeline.process``)."""
    events.sort(key=_TS)
    result = pipeline.process(events, final, clock)
    out = StepOutput(events=len(events), names=Counter(result.names), decisions=result.decisions,
                     late=Counter(result.late))  # fmt: skip
    render = RENDERERS[alert_format]
    for a in result.alerts:
        incident = a.incident.incident
        out.alerts.append(Alert(alert_id(a.decision, incident), a.decision.finding.detector,
                                render(a.decision, incident), a.decision))  # fmt: skip
    for d in result.decisions:
        out.findings[d.finding.detector] += 1
        if d.verdict is not None:
            out.verdicts.append(d.verdict)
            out.verdict_actions[d.verdict.action] += 1
    return out
