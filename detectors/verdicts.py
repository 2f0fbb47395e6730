"""The verdict policy: which findings become block verdicts, where, and for how long.

Precedence, in order:

1. a finding about no name (storm, rate) never blocks; it is an alert only;
2. a name on the allowlist (operator list, or among the top-N popular
   registrable domains), or under such a name, is never blocked by a detector,
   at any scope; an entry that is a public suffix (``duckdns.org``) covers
   only itself, not its tenants;
3. the detector's rule decides: minimum score, scope (``global`` or the
   client's ``namespace``), match (``exact`` name or ``suffix`` = the name and
   everything under it), action, and time to live;
4. shadow mode (globally, or for a namespace) turns the action into ``shadow``:
   the filter observes and marks events but does not block.

Every verdict carries a one-line reason with the evidence that led to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding
from detectors.names import normalise, split_name

ACTIONS = frozenset({"nxdomain", "refused", "sinkhole", "shadow"})
SCOPES = frozenset({"global", "namespace"})
MATCHES = frozenset({"exact", "suffix"})


@dataclass(frozen=True, slots=True)
class DetectorRule:
    block: bool = True
    min_score: float = 0.0
    scope: str = "global"
    match: str = "suffix"
    action: str = "nxdomain"
    ttl_s: float = 86_400.0

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}, got {self.scope!r}")
        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {sorted(MATCHES)}, got {self.match!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}, got {self.action!r}")
        if self.ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")


def default_rules() -> dict[str, DetectorRule]:
    return {
        "dga": DetectorRule(scope="global", match="suffix", ttl_s=86_400.0),
        "tunnel": DetectorRule(min_score=0.5, scope="global", match="suffix", ttl_s=86_400.0),
        "fast_flux": DetectorRule(min_score=0.5, scope="global", match="exact", ttl_s=21_600.0),
        "nxdomain_storm": DetectorRule(block=False),
        "rate": DetectorRule(block=False),
        "new_domain": DetectorRule(block=False),
    }


@dataclass(frozen=True, slots=True)
class PolicySettings:
    rules: Mapping[str, DetectorRule] = field(default_factory=default_rules)
    shadow_global: bool = False
    shadow_namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Verdict:
    scope: str  # "global" or "ns:<namespace>"
    name: str
    match: str
    action: str
    detector: str
    score: float
    reason: str
    created: float
    expires: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The compacted-topic and Redis key: ``scope|name``."""
        return f"{self.scope}|{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "name": self.name,
            "match": self.match,
            "action": self.action,
            "detector": self.detector,
            "score": self.score,
            "reason": self.reason,
            "created": self.created,
            "expires": self.expires,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    finding: Finding
    verdict: Verdict | None
    disposition: str  # "blocked", "shadow", "allowlisted", "below-threshold", "alert-only"


class Allowlist:
    """Names never blocked by detectors: exact names and everything under them,
    down to the registrable domain.

    An entry that is a public suffix covers only itself. Popularity rankings
    list shared parents such as ``duckdns.org``, ``blogspot.com`` or
    ``github.io`` (each popular because of its many tenants), and allowlisting
    such an entry must not allowlist every tenant under it.
    """

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names = {normalise(n) for n in names if n.strip()}

    def __len__(self) -> int:
        return len(self._names)

    def match(self, name: str) -> str | None:
        """The allowlisted name or parent that covers ``name``, or None."""
        norm = normalise(name)
        if norm in self._names:
            return norm
        labels = norm.split(".")
        # parents of the name, from the nearest down to its registrable domain
        registrable_labels = split_name(norm).registrable.count(".") + 1
        for i in range(1, len(labels) - registrable_labels + 1):
            candidate = ".".join(labels[i:])
            if candidate in self._names:
                return candidate
        return None


class VerdictPolicy:
    def __init__(self, settings: PolicySettings | None = None, allowlist: Allowlist | None = None):
        self.settings = settings or PolicySettings()
        self.allowlist = allowlist or Allowlist()

    def decide(self, finding: Finding) -> Decision:
        rule = self.settings.rules.get(finding.detector)
        if finding.name is None or rule is None or not rule.block:
            return Decision(finding, None, "alert-only")
        covered = self.allowlist.match(finding.name)
        if covered is not None:
            return Decision(finding, None, "allowlisted")
        if finding.score < rule.min_score:
            return Decision(finding, None, "below-threshold")
        if rule.scope == "namespace" and finding.namespace:
            scope = f"ns:{finding.namespace}"
            shadow = (
                self.settings.shadow_global or finding.namespace in self.settings.shadow_namespaces
            )
        else:
            scope = "global"
            shadow = self.settings.shadow_global
        action = "shadow" if shadow else rule.action
        verdict = Verdict(
            scope=scope,
            name=finding.name,
            match=rule.match,
            action=action,
            detector=finding.detector,
            score=finding.score,
            reason=f"{finding.detector}: {finding.summary}",
            created=finding.ts,
            expires=finding.ts + rule.ttl_s,
            evidence=finding.evidence,
        )
        return Decision(finding, verdict, "shadow" if shadow else "blocked")
