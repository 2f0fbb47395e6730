"""All detectors and the verdict policy over a batch of events.

``Pipeline.process(events)`` is the one call the Faust agents, the embedded
replay mode and the benchmarks make: the same code, the same results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from detectors.dga import CachedScorer, DgaModel
from detectors.dga_detector import DgaDetector, DgaSettings
from detectors.events import DnsEvent
from detectors.fastflux import FastFlux, FastFluxSettings
from detectors.findings import Finding
from detectors.newdomain import NewDomainSettings, NewlyObservedDomain
from detectors.nxdomain import NxdomainSettings, NxdomainStorm
from detectors.rate import RateAnomaly, RateSettings
from detectors.tunnel import Tunneling, TunnelSettings
from detectors.verdicts import Allowlist, Decision, PolicySettings, VerdictPolicy
from detectors.zones import ClusterSettings, Zones


class EventDetector(Protocol):
    name: str

    def update(self, ev: DnsEvent) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    dga: DgaSettings = field(default_factory=DgaSettings)
    nxdomain: NxdomainSettings = field(default_factory=NxdomainSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    rate: RateSettings = field(default_factory=RateSettings)
    new_domain: NewDomainSettings = field(default_factory=NewDomainSettings)
    fast_flux: FastFluxSettings = field(default_factory=FastFluxSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    enable_new_domain: bool = True


@dataclass(frozen=True, slots=True)
class BatchResult:
    findings: list[Finding]
    decisions: list[Decision]


class Pipeline:
    def __init__(
        self,
        model: DgaModel,
        settings: DetectorSettings | None = None,
        allowlist: Iterable[str] = (),
    ) -> None:
        self.settings = s = settings or DetectorSettings()
        self.dga = DgaDetector(CachedScorer(model, s.dga.cache_entries), s.dga)
        self.rate = RateAnomaly(s.rate)  # its baselines outlive a worker: see streams/worker
        self.per_event: list[EventDetector] = [
            NxdomainStorm(s.nxdomain),
            Tunneling(s.tunnel),
            self.rate,
            FastFlux(s.fast_flux),
        ]
        if s.enable_new_domain:
            self.per_event.append(NewlyObservedDomain(s.new_domain))
        self.zones = Zones(s.cluster)
        self.policy = VerdictPolicy(s.policy, Allowlist(allowlist), self.zones)

    def process(self, events: Sequence[DnsEvent]) -> BatchResult:
        findings: list[Finding] = []
        # Detector by detector: they share no state, so the order of updates
        # across detectors does not matter, only each one's order of events.
        for det in self.per_event:
            update = det.update
            for ev in events:
                found = update(ev)
                if found:
                    findings.extend(found)
        findings.extend(self.dga.update_batch(events))
        findings.sort(key=lambda f: (f.ts, f.detector, f.client, f.name or ""))
        return BatchResult(findings, [self.policy.decide(f) for f in findings])
