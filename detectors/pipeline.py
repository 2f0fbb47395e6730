"""All detectors, the verdict policy and the incident table over a batch of events.

``Pipeline.process(events)`` is the one call the Faust agents, the embedded
replay mode, the cluster benchmark and the other benchmarks make: the same
code, the same results.

Each batch goes through these steps:

1. **classify** every query name (:class:`detectors.zones.Zones`): search-path
   expansions and internal names are counted and go no further, except into
   the client's query rate;
2. **per-event detectors** (NXDOMAIN storm, tunnelling, newly observed
   domains, query rate) see the names that may count (the rate: every name),
   each name split once; those whose state is per client take the batch
   grouped by client, each client's events in time order, which finds exactly
   what one event at a time does (``tests/unit/test_detector_batches.py``);
3. **names**: each name's registrable domain is scored once (DGA likelihood
   and dictionary-word shape, cached), and :class:`Popularity` says whether
   another client asked for it;
4. the **client-level DGA detector** (:mod:`detectors.infected`) and the
   strict **per-name** rule (:mod:`detectors.dga_detector`) weigh them (the
   client-level detector takes each client's events in time order, a couple
   of seconds of event time later: ``process(..., final=True)`` at the end
   of an input takes up the rest);
5. findings become **decisions** (the verdict policy) and **incident**
   updates, which say which findings are alerted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from detectors.dga import DgaModel, RegistrableScorer
from detectors.dga_detector import DgaDetector, DgaSettings
from detectors.events import DnsEvent
from detectors.fastflux import FastFlux, FastFluxSettings
from detectors.findings import Finding
from detectors.incidents import Incidents, IncidentSettings, IncidentUpdate
from detectors.infected import InfectedClient, InfectedSettings, Item
from detectors.names import SplitName, split_name
from detectors.newdomain import NewDomainSettings, NewlyObservedDomain
from detectors.nxdomain import NxdomainSettings, NxdomainStorm
from detectors.popularity import Popularity
from detectors.rate import RateAnomaly, RateSettings
from detectors.tunnel import Tunneling, TunnelSettings
from detectors.verdicts import Allowlist, Decision, PolicySettings, VerdictPolicy
from detectors.zones import ClusterSettings, NameKind, Zones

# the kinds of name that count as evidence
COUNTED = (NameKind.PUBLIC, NameKind.DYNAMIC_DNS, NameKind.HOSTING)
_LABELS = {k: k.name.lower() for k in NameKind}  # a kind's name in metrics and counts
_client = attrgetter("client")
DEFAULT_EVIDENCE_THRESHOLD = 0.9
DEFAULT_BLOCK_THRESHOLD = 0.99999
CLIENT_STATE_VERSION = 1  # the shape of Pipeline.dump_client's snapshot


class ClientState(Protocol):
    """Per-client state that can be written out as plain JSON and taken up again."""

    def dump(self, client: str) -> Any: ...
    def load(self, client: str, data: Any) -> None: ...
    def forget(self, client: str) -> None: ...


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    dga: DgaSettings = field(default_factory=DgaSettings)
    infected: InfectedSettings = field(default_factory=InfectedSettings)
    nxdomain: NxdomainSettings = field(default_factory=NxdomainSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    rate: RateSettings = field(default_factory=RateSettings)
    new_domain: NewDomainSettings = field(default_factory=NewDomainSettings)
    fast_flux: FastFluxSettings = field(default_factory=FastFluxSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    enable_new_domain: bool = True
    max_popularity: int = 200_000


@dataclass(frozen=True, slots=True)
class Alert:
    """A decision that is alerted, with the incident it belongs to."""

    decision: Decision
    incident: IncidentUpdate


@dataclass(frozen=True, slots=True)
class BatchResult:
    findings: list[Finding]
    decisions: list[Decision]
    alerts: list[Alert] = field(default_factory=list)
    # events by what the name was: search expansions, internal, counted...
    names: Counter[str] = field(default_factory=Counter)
    # by detector: events later than it waits for a client's stragglers, not counted
    late: Counter[str] = field(default_factory=Counter)


class Pipeline:
    def __init__(
        self,
        model: DgaModel,
        settings: DetectorSettings | None = None,
        allowlist: Iterable[str] = (),
    ) -> None:
        self.settings = s = settings or DetectorSettings()
        thresholds = model.thresholds
        evidence = s.dga.evidence_threshold or thresholds.get(
            "evidence", DEFAULT_EVIDENCE_THRESHOLD
        )
        block = s.dga.block_threshold or thresholds.get("block", DEFAULT_BLOCK_THRESHOLD)
        self.scorer = RegistrableScorer(model, s.dga.cache_entries)
        self.dga = DgaDetector(s.dga, evidence, block)
        self.infected = InfectedClient(s.infected)
        self.rate = RateAnomaly(s.rate)
        self.storm = NxdomainStorm(s.nxdomain)
        self.tunnel = Tunneling(s.tunnel)
        self.fast_flux = FastFlux(s.fast_flux)
        self.new_domain = NewlyObservedDomain(s.new_domain) if s.enable_new_domain else None
        self.zones = Zones(s.cluster)
        self.allowlist = Allowlist(allowlist)
        self.popularity = Popularity(s.max_popularity)
        self.policy = VerdictPolicy(s.policy, self.allowlist, self.zones)
        self.incidents = Incidents(s.incidents)
        # by name (answered) or by (name, namespace) (NXDOMAIN or not seen)
        self._kinds: dict[str | tuple[str, str], tuple[NameKind, str]] = {}
        # what detection keeps per client, by its name in a snapshot
        self._client_parts: dict[str, ClientState] = {
            "rate": self.rate,
            "storm": self.storm,
            "tunnel": self.tunnel,
            "infected": self.infected,
            "incidents": self.incidents,
        }

    # -- per-client state, as plain JSON ---------------------------------------------
    # What detection knows about one client (its windows, its DGA evidence, its
    # query-rate baseline, its open incidents) can be written out and taken up
    # again, by this process after a restart or by another one that takes the
    # client over: the worker keeps these snapshots in a changelog-backed table.
    # Global state (which names other clients asked for, newly observed domains
    # per namespace, name scores) is not a client's and is not in them.

    def dump_client(self, client: str) -> dict[str, Any] | None:
        """Everything detection keeps about ``client``, as plain JSON (None: nothing)."""
        parts = {name: part.dump(client) for name, part in self._client_parts.items()}
        kept = {k: v for k, v in parts.items() if v is not None}
        return {"v": CLIENT_STATE_VERSION, **kept} if kept else None

    def load_client(self, client: str, snapshot: dict[str, Any]) -> None:
        """Replace what detection keeps about ``client`` with ``snapshot`` (from
        :meth:`dump_client`). A snapshot of another shape raises ``ValueError``
        and leaves the client with no state (as a client never seen)."""
        self.forget_client(client)
        if not isinstance(snapshot, dict) or snapshot.get("v") != CLIENT_STATE_VERSION:
            raise ValueError(f"not a client snapshot of version {CLIENT_STATE_VERSION}")
        try:
            for name, part in self._client_parts.items():
                if name in snapshot:
                    part.load(client, snapshot[name])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            self.forget_client(client)
            raise ValueError(f"client snapshot: {type(exc).__name__}: {exc}") from exc

    def forget_client(self, client: str) -> None:
        """Drop what detection keeps about ``client`` (its partition moved away)."""
        for part in self._client_parts.values():
            part.forget(client)

    def kind(self, ev: DnsEvent) -> NameKind:
        return self._kind(ev)[0]

    def _kind(self, ev: DnsEvent) -> tuple[NameKind, str]:
        """What the event's name is, and that kind's metric label (cached: a
        batch asks for the same names again and again)."""
        # an expansion-shaped name whose answer was not seen (UDP) is taken for
        # the NXDOMAIN expansion it nearly always is; only then does the
        # namespace matter (its search suffixes)
        if ev.rcode == "NXDOMAIN" or not ev.observed:
            key: str | tuple[str, str] = (ev.qname, ev.namespace)
            rcode: str | None = "NXDOMAIN"
        else:
            key, rcode = ev.qname, ev.rcode
        known = self._kinds.get(key)
        if known is None:
            if len(self._kinds) >= 200_000:
                self._kinds.clear()
            kind = self.zones.kind(ev.qname, ev.namespace, rcode)
            known = self._kinds[key] = (kind, _LABELS[kind])
        return known

    def process(
        self, events: Sequence[DnsEvent], final: bool = False, clock: float | None = None
    ) -> BatchResult:
        """One batch (sorted by time). ``final``: the input ends with it, and
        what the client-level detector holds for time order is taken up too.
        ``clock``: the time now, for a live input that may have gone quiet (the
        held events move on with it as with newer events)."""
        late_before = self.rate.late_dropped
        known = [self._kind(ev) for ev in events]
        names = Counter([label for _, label in known])
        kinds = [k for k, _ in known]
        counted = [ev for ev, k in zip(events, kinds, strict=True) if k in COUNTED]
        splits = [split_name(ev.qname) for ev in counted]
        # each client's events together, still in time order: a detector whose
        # state is per client looks it up once a run
        order = sorted(range(len(counted)), key=[ev.client for ev in counted].__getitem__)
        by_client = [counted[i] for i in order]
        by_client_splits = [splits[i] for i in order]
        findings: list[Finding] = []
        # Detector by detector: they share no state, so the order of updates
        # across detectors does not matter, only each one's order of events.
        findings += self.storm.update_many(by_client, by_client_splits)
        findings += self.tunnel.update_many(by_client, by_client_splits)
        if self.new_domain is not None:  # per namespace: all clients' events in time order
            findings += self.new_domain.update_many(counted, splits)
        findings += self.rate.update_many(sorted(events, key=_client))
        findings.extend(self._names(counted, splits, [k for k in kinds if k in COUNTED]))
        if events or final or clock is not None:
            newest = max((ev.ts for ev in events), default=-1e18)
            if clock is not None:
                newest = max(newest, clock - self.infected.settings.clock_slack_s)
            findings.extend(self.infected.advance(newest, final))
        findings.sort(key=lambda f: (f.ts, f.detector, f.client, f.name or ""))
        decisions = [self.policy.decide(f) for f in findings]
        alerts = []
        for d in decisions:
            rule = self.policy.settings.rules.get(d.finding.detector)
            incident = self.incidents.update(
                d.finding, d.verdict.name if d.verdict is not None else None
            )
            if incident.alert and (rule is None or rule.alert):
                alerts.append(Alert(d, incident))
        late = Counter({self.rate.name: self.rate.late_dropped - late_before})
        return BatchResult(findings, decisions, alerts, names, +late)

    def _names(
        self, counted: list[DnsEvent], splits: list[SplitName], kinds_of: list[NameKind]
    ) -> list[Finding]:
        """The per-name and client-level DGA detectors, on one batch's counted events."""
        if not counted:
            return []
        # each registrable domain of the batch described once
        registrables = dict.fromkeys([sp.registrable for sp in splits])
        described = dict(zip(registrables, self.scorer.describe(list(registrables)), strict=True))
        info = [described[sp.registrable] for sp in splits]
        evidence = self.dga.evidence_threshold
        observe, listed = self.popularity.observe, self.allowlist.has
        typo = self.popularity.typo_of_popular
        dga, flux = self.dga, self.fast_flux.update
        out: list[Finding] = []
        items: list[Item] = []  # for the client-level detector, in time order
        for ev, sp, (score, wordy), kind in zip(counted, splits, info, kinds_of, strict=True):
            registrable = sp.registrable
            shared = observe(registrable, ev.client) or listed(registrable)
            # NXDOMAIN, or not seen (a query-only UDP event): the name may not exist
            maybe_nx = ev.rcode == "NXDOMAIN" or not ev.observed
            if not shared and maybe_nx and typo(sp.label, sp.suffix):
                shared = True  # a typo of a popular name: a person, not a bot
            if ev.rcode == "NXDOMAIN":
                dga.saw_nxdomain(registrable)
            elif kind != NameKind.HOSTING and not shared and ev.observed:
                found = dga.update(ev, registrable, score)
                if found:
                    out.extend(found)
                if ev.answers:
                    found = flux(ev)
                    if found:
                        out.extend(found)
            if maybe_nx and len(ev.qname) > len(registrable):
                continue  # a missing host under a domain: a DGA asks for domains
            if not ev.observed and kind == NameKind.HOSTING:
                continue  # a provider's resource id, most likely resolving: unknowable unseen
            items.append((ev, registrable, sp.suffix, score, score >= evidence, wordy, shared))
        self.infected.update(items)
        return out
