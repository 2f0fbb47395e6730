"""The verdict policy: which findings become block verdicts, where, and for how long.

Precedence, in order:

1. a finding about no name (storm, rate) never blocks; it is an alert only;
2. the target must be blockable: a valid name (:mod:`detectors.dnsname`)
   that is not the root, not a public suffix and not in an internal zone
   (:meth:`detectors.zones.Zones.blockable`); otherwise ``not-blockable``;
3. a name on the allowlist (operator list, or among the top-N popular
   registrable domains), or under such a name, is never blocked by a detector,
   at any scope; an entry that is a public suffix (``duckdns.org``) covers
   only itself, not its tenants; and a ``suffix`` verdict whose target has an
   allowlisted name under it (``google.com`` when ``www.google.com`` is
   listed) is refused too, since it would block that name;
4. the detector's rule decides: minimum score, match (``exact`` name or
   ``suffix`` = the name and everything under it), action and time to live.
   A rule that judges one name on its own (``per_name``, the DGA scorer) never
   blocks a name under a hosting suffix (``needs-client-evidence``): there the
   label is an account or resource id, random by design;
5. **scope follows evidence**: a verdict drawn from one client's behaviour
   applies to that client's namespace only (``ns:<namespace>``). It becomes
   global (``*``) once findings for the same target came from
   ``global_min_namespaces`` different namespaces within the rule's time to
   live; a finding from a client without a namespace makes no verdict until
   then (``unscoped``). Operator rules (:mod:`detectors.operator_policy`) are
   the other way to block a name everywhere;
6. shadow mode (globally, or for a namespace) turns the action into ``shadow``:
   the filter observes and marks events but does not block.

Every verdict carries a one-line reason with the evidence that led to it and
why it has the scope it has.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.dnsname import InvalidName, canonical_name, is_canonical
from detectors.findings import Finding
from detectors.identity import valid_namespace, valid_scope
from detectors.names import split_name
from detectors.vocabulary import GLOBAL_SCOPE, MATCHES
from detectors.vocabulary import VERDICT_ACTIONS as ACTIONS
from detectors.window import BoundedStates
from detectors.zones import NameKind, Zones


@dataclass(frozen=True, slots=True)
class DetectorRule:
    block: bool = True
    min_score: float = 0.0
    match: str = "suffix"
    action: str = "nxdomain"
    ttl_s: float = 86_400.0
    # judges one name on its own, without client-level evidence
    per_name: bool = False
    # its findings are alerted (incidents); False: evidence and metrics only
    alert: bool = True

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {sorted(MATCHES)}, got {self.match!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}, got {self.action!r}")
        if self.ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")


def default_rules() -> dict[str, DetectorRule]:
    return {
        "dga": DetectorRule(match="suffix", ttl_s=86_400.0, per_name=True),
        "infected_client": DetectorRule(match="suffix", ttl_s=86_400.0),
        "tunnel": DetectorRule(min_score=0.5, match="suffix", ttl_s=86_400.0),
        "fast_flux": DetectorRule(min_score=0.5, match="exact", ttl_s=21_600.0),
        "nxdomain_storm": DetectorRule(block=False),
        "rate": DetectorRule(block=False),
        # a first query in a namespace is context, not something a SOC acts on
        "new_domain": DetectorRule(block=False, alert=False),
    }


@dataclass(frozen=True, slots=True)
class PolicySettings:
    rules: Mapping[str, DetectorRule] = field(default_factory=default_rules)
    shadow_global: bool = False
    shadow_namespaces: frozenset[str] = frozenset()
    # a detector verdict applies everywhere only once findings for its target
    # came from this many namespaces (0: never; only operator rules block globally)
    global_min_namespaces: int = 3
    max_tracked_targets: int = 100_000

    def __post_init__(self) -> None:
        if self.global_min_namespaces < 0:
            raise ValueError("global_min_namespaces must be >= 0")


class InvalidVerdict(ValueError):
    """A verdict whose scope or name could reach the feed or a blocklist unsafely."""


@functools.cache
def _default_zones() -> Zones:
    return Zones()


def check_target(scope: str, name: str, match: str, action: str) -> None:
    """Raise :class:`InvalidVerdict` unless this is a verdict the feed and the
    publisher may carry: a valid scope, a canonical name that is not the root,
    a public suffix or an internal zone, a known match and action."""
    if not valid_scope(scope):
        raise InvalidVerdict(f"invalid scope {scope!r}")
    if not name or not is_canonical(name):
        raise InvalidVerdict(f"invalid target name {name!r}")
    why_not = _default_zones().blockable(name)
    if why_not is not None:
        raise InvalidVerdict(f"target {name!r} is {why_not}")
    if match not in MATCHES:
        raise InvalidVerdict(f"invalid match {match!r}")
    if action not in ACTIONS:
        raise InvalidVerdict(f"invalid action {action!r}")


@dataclass(frozen=True, slots=True)
class Verdict:
    scope: str  # "*" (every namespace) or "ns:<namespace>"
    name: str
    match: str
    action: str
    detector: str
    score: float
    reason: str
    created: float
    expires: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_target(self.scope, self.name, self.match, self.action)

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
    # "blocked", "shadow", "allowlisted", "below-threshold", "alert-only",
    # "not-blockable", "needs-client-evidence", "unscoped"
    disposition: str
    why: str = ""  # for the dispositions that make no verdict


class Allowlist:
    """Names never blocked by detectors: exact names and everything under them,
    down to the registrable domain.

    An entry that is a public suffix covers only itself. Popularity rankings
    list shared parents such as ``duckdns.org``, ``blogspot.com`` or
    ``github.io`` (each popular because of its many tenants), and allowlisting
    such an entry must not allowlist every tenant under it.
    """

    __slots__ = ("_ancestors", "_names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        for n in names:
            try:
                name = canonical_name(n.strip())
            except InvalidName:
                continue
            if name:
                self._names.add(name)
        # parents of each entry down to its registrable domain: a suffix
        # verdict on one of them would block the entry
        self._ancestors: set[str] = set()
        for name in self._names:
            labels = name.split(".")
            registrable_labels = split_name(name).registrable.count(".") + 1
            for i in range(1, len(labels) - registrable_labels + 1):
                self._ancestors.add(".".join(labels[i:]))

    def __len__(self) -> int:
        return len(self._names)

    def match(self, name: str) -> str | None:
        """The allowlisted name or parent that covers ``name``, or None."""
        if name in self._names:
            return name
        labels = name.split(".")
        # parents of the name, from the nearest down to its registrable domain
        registrable_labels = split_name(name).registrable.count(".") + 1
        for i in range(1, len(labels) - registrable_labels + 1):
            candidate = ".".join(labels[i:])
            if candidate in self._names:
                return candidate
        return None

    def has(self, name: str) -> bool:
        """Whether ``name`` itself is listed (a registrable domain's whole check)."""
        return name in self._names

    def conflicts(self, name: str, match: str) -> str | None:
        """The allowlisted name a verdict on ``name`` would block, or None."""
        covered = self.match(name)
        if covered is not None:
            return covered
        if match == "suffix" and name in self._ancestors:
            return next(n for n in self._names if n.endswith("." + name))
        return None


class VerdictPolicy:
    def __init__(
        self,
        settings: PolicySettings | None = None,
        allowlist: Allowlist | None = None,
        zones: Zones | None = None,
    ):
        self.settings = s = settings or PolicySettings()
        self.allowlist = allowlist or Allowlist()
        self.zones = zones or Zones()
        # target name -> {namespace: last finding ts}, for scope escalation
        self._evidence: BoundedStates[str, dict[str, float]] = BoundedStates(
            s.max_tracked_targets, dict
        )

    def _namespaces(self, name: str, namespace: str, ts: float, window_s: float) -> int:
        """Record a finding for ``name`` from ``namespace``; how many namespaces
        produced findings for it within ``window_s``."""
        seen = self._evidence.get(name)
        if namespace:
            seen[namespace] = max(ts, seen.get(namespace, ts))
        for ns in [ns for ns, last in seen.items() if last <= ts - window_s]:
            del seen[ns]
        keep = max(self.settings.global_min_namespaces, 1)
        if len(seen) > keep:  # bounded: the most recent are enough to decide
            for ns, _ in sorted(seen.items(), key=lambda kv: kv[1])[: len(seen) - keep]:
                del seen[ns]
        return len(seen)

    def decide(self, finding: Finding) -> Decision:
        rule = self.settings.rules.get(finding.detector)
        if finding.name is None or rule is None or not rule.block:
            return Decision(finding, None, "alert-only")
        try:
            name = canonical_name(finding.name)
        except InvalidName as exc:
            return Decision(finding, None, "not-blockable", str(exc))
        why_not = self.zones.blockable(name)
        if why_not is not None:
            return Decision(finding, None, "not-blockable", f"{name or '.'} is {why_not}")
        covered = self.allowlist.conflicts(name, rule.match)
        if covered is not None:
            return Decision(finding, None, "allowlisted", f"{covered} is allowlisted")
        if finding.score < rule.min_score:
            return Decision(finding, None, "below-threshold")
        if rule.per_name and self.zones.kind(name) == NameKind.HOSTING:
            return Decision(
                finding,
                None,
                "needs-client-evidence",
                f"{name} is under a hosting suffix: a per-name score alone never blocks it",
            )
        s = self.settings
        namespace = finding.namespace if valid_namespace(finding.namespace) else ""
        spread = self._namespaces(name, namespace, finding.ts, rule.ttl_s)
        if s.global_min_namespaces and spread >= s.global_min_namespaces:
            scope = GLOBAL_SCOPE
            shadow = s.shadow_global
            scope_why = f"global: findings from {spread} namespaces"
        elif namespace:
            scope = f"ns:{namespace}"
            shadow = s.shadow_global or namespace in s.shadow_namespaces
            scope_why = f"namespace {namespace} only: evidence from {spread} namespace(s)" + (
                f", a global verdict needs {s.global_min_namespaces}"
                if s.global_min_namespaces
                else ""
            )
        else:
            return Decision(
                finding,
                None,
                "unscoped",
                f"the client has no namespace to scope a verdict to ({spread} namespace(s) so far)",
            )
        action = "shadow" if shadow else rule.action
        verdict = Verdict(
            scope=scope,
            name=name,
            match=rule.match,
            action=action,
            detector=finding.detector,
            score=finding.score,
            reason=f"{finding.detector}: {finding.summary} [{scope_why}]",
            created=finding.ts,
            expires=finding.ts + rule.ttl_s,
            evidence=finding.evidence,
        )
        return Decision(finding, verdict, "shadow" if shadow else "blocked", scope_why)
