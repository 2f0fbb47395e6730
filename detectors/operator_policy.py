"""Operator egress policy: rules, scopes, categories, default-deny, and how they
merge with detector verdicts. Pure: the YAML file is read in
``streams.policy.file``, stored in ``streams.policy_store``.

Precedence (the filter's ``dnspolicy::Policy::decide`` implements the same;
``tests/unit/test_operator_policy.py`` and a property test keep them equal):

1. **Operator rules** decide first. Among the operator rules that match, the
   most specific wins: scope first (workload, then namespace, then global),
   then the longer matching name (a default-deny scope is a catch-all rule on
   the root, the least specific name there is); at equal specificity a block
   beats an allow, and an allow beats a ``log`` mark; between two blocks,
   ``nxdomain`` beats ``refused`` beats ``sinkhole``.
2. So an operator **allow** keeps detector verdicts off the name in that scope,
   and an operator **block** beats everything.
3. **Detector verdicts** fill the rest (namespace before global, then the
   longer name, then the stronger action as above). An operator ``log`` mark
   yields only to a detector block.
4. Nothing matched: the query is allowed (the scope's default-allow).

Every decision names what decided it (:class:`PolicyAnswer`), which is what
``dnsguard policy explain`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.vocabulary import BLOCKING, GLOBAL_SCOPE, canonical_scope

ROOT = ""  # a rule on the root covers every name


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    namespace: str | None = None
    workload: str | None = None

    @property
    def level(self) -> int:
        return 2 if self.workload else 1 if self.namespace else 0

    @property
    def key(self) -> str:
        """The feed's spelling: ``*``, ``ns:<namespace>``, ``wl:<namespace>/<workload>``."""
        if self.workload:
            return f"wl:{self.namespace}/{self.workload}"
        return f"ns:{self.namespace}" if self.namespace else "*"

    def applies(self, namespace: str, workload: str) -> bool:
        if self.namespace is not None and self.namespace != namespace:
            return False
        return self.workload is None or self.workload == workload

    def __str__(self) -> str:
        if self.workload:
            return f"workload {self.namespace}/{self.workload}"
        return f"namespace {self.namespace}" if self.namespace else "the global scope"

    @classmethod
    def from_key(cls, key: str) -> Scope:
        if canonical_scope(key) == GLOBAL_SCOPE:
            return cls()
        if key.startswith("ns:"):
            return cls(namespace=key[3:])
        if key.startswith("wl:") and "/" in key:
            ns, wl = key[3:].split("/", 1)
            return cls(namespace=ns, workload=wl)
        raise ValueError(f"invalid scope {key!r}")


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    domains: frozenset[str]
    match: str = "suffix"
    sources: tuple[str, ...] = ()
    skipped: int = 0  # lines of the source lists that were not domains


@dataclass(frozen=True, slots=True)
class Rule:
    scope: Scope
    match: str  # exact | suffix | category
    value: str  # the name (ROOT for ".") or the category's name
    action: str
    expires: float = 0.0  # epoch seconds; 0 = never
    comment: str = ""
    line: int = 0  # where it is in the policy file

    def describe(self) -> str:
        what = (
            f"category {self.value}"
            if self.match == "category"
            else f"{self.match} {self.value or '.'}"
        )
        where = f" (line {self.line})" if self.line else ""
        note = f": {self.comment}" if self.comment else ""
        return f"operator rule{where}: {self.action} {what} in {self.scope}{note}"


@dataclass(frozen=True, slots=True)
class ScopeMode:
    scope: Scope
    mode: str  # default-allow | default-deny
    action: str = "nxdomain"  # what a default-deny scope answers
    line: int = 0


@dataclass(frozen=True)
class OperatorPolicy:
    rules: tuple[Rule, ...] = ()
    modes: tuple[ScopeMode, ...] = ()
    categories: Mapping[str, Category] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """One compiled rule, as the feed carries it (plus where it came from)."""

    origin: str  # "o" operator, "d" detector
    scope: Scope
    match: str  # exact | suffix
    name: str  # ROOT for the root
    action: str
    expires: float
    source: str  # human-readable provenance

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What the filter's table keeps one of (the latest expiry wins)."""
        return (self.origin, self.scope.key, self.match, self.action, self.name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "scope": self.scope.key,
            "match": self.match,
            "name": self.name or ".",
            "action": self.action,
            "expires": self.expires,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        name = d["name"]
        return cls(d.get("origin", "o"), Scope.from_key(d["scope"]), d["match"],
                   ROOT if name == "." else name, d["action"], float(d.get("expires") or 0),
                   d.get("source", ""))  # fmt: skip


# At equal specificity the stronger action wins: a block over an allow over a
# mark, and among blocks nxdomain, then refused, then sinkhole. A total order,
# so a decision never depends on the order rules were listed or stored in.
_PRECEDENCE = {"nxdomain": 5, "refused": 4, "sinkhole": 3, "allow": 2, "log": 1, "shadow": 1}


def _action_rank(action: str) -> int:
    return _PRECEDENCE.get(action, 0)


def _lasts(e: Entry) -> float:
    return float("inf") if not e.expires else e.expires


def compile_policy(policy: OperatorPolicy) -> list[Entry]:
    """The operator rules as feed entries: categories expanded, default-deny
    scopes as catch-all rules on the root. Rules that land on the same
    (scope, match, action, name) become one, lasting as long as the longest."""
    chosen: dict[tuple[str, str, str, str, str], Entry] = {}

    def put(e: Entry) -> None:
        old = chosen.get(e.identity)
        if old is None or _lasts(e) > _lasts(old):
            chosen[e.identity] = e

    for m in policy.modes:
        if m.mode == "default-deny":
            put(
                Entry(
                    "o",
                    m.scope,
                    "suffix",
                    ROOT,
                    m.action,
                    0.0,
                    f"default-deny {m.scope} (line {m.line})",
                )
            )
    for r in policy.rules:
        if r.match == "category":
            cat = policy.categories[r.value]
            for domain in cat.domains:
                put(Entry("o", r.scope, cat.match, domain, r.action, r.expires, r.describe()))
        else:
            put(Entry("o", r.scope, r.match, r.value, r.action, r.expires, r.describe()))
    return list(chosen.values())


def verdict_entry(v: Mapping[str, Any]) -> Entry:
    """A detector verdict (as stored in Redis) as an entry."""
    return Entry("d", Scope.from_key(v["scope"]), v["match"], v["name"], v["action"],
                 float(v.get("expires") or 0),
                 f"{v.get('detector', 'detector')} verdict (score {float(v.get('score', 0)):.3f}): {v.get('reason', '')}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    action: str  # allow when nothing blocks
    entry: Entry | None  # None: nothing matched
    matched: str | None  # the name the deciding rule is set on

    @property
    def blocked(self) -> bool:
        return self.action in BLOCKING

    def explain(self) -> str:
        if self.entry is None:
            return "allow: no operator rule or detector verdict matches (default-allow)"
        on = f" (matched on {self.matched or '.'})" if self.matched is not None else ""
        return f"{self.action}{on}: {self.entry.source}"


def _suffixes(qname: str) -> Iterator[str]:
    labels = qname.split(".")
    for i in range(len(labels)):
        yield ".".join(labels[i:])
    yield ROOT


def _pick(candidates: Iterable[tuple[Entry, str]]) -> PolicyAnswer:
    operator: tuple[tuple[int, int, int], Entry, str] | None = None
    detector: tuple[tuple[int, int, int], Entry, str] | None = None
    for e, on in candidates:
        if e.origin == "o":
            rank_o = (e.scope.level, len(on), _action_rank(e.action))
            if operator is None or rank_o > operator[0]:
                operator = (rank_o, e, on)
        else:
            rank_d = (e.scope.level, len(on), _action_rank(e.action))
            if detector is None or rank_d > detector[0]:
                detector = (rank_d, e, on)
    if operator is not None:
        _, e, on = operator
        if e.action in BLOCKING or e.action == "allow":
            return PolicyAnswer(e.action, e, on)
        if detector is not None and detector[1].action in BLOCKING:
            return PolicyAnswer(detector[1].action, detector[1], detector[2])
        return PolicyAnswer(e.action, e, on)
    if detector is not None:
        return PolicyAnswer(detector[1].action, detector[1], detector[2])
    return PolicyAnswer("allow", None, None)


class CompiledPolicy:
    """Entries indexed by name, matched with one lookup per label (as the filter does)."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.by_name: dict[str, list[Entry]] = {}
        for e in entries:
            self.by_name.setdefault(e.name, []).append(e)

    def decide(
        self, qname: str, namespace: str, workload: str = "", now: float = 0.0
    ) -> PolicyAnswer:
        qname = qname.lower().rstrip(".")

        def candidates() -> Iterator[tuple[Entry, str]]:
            for suffix in _suffixes(qname):
                for e in self.by_name.get(suffix, ()):
                    covered = suffix == qname or e.match == "suffix"
                    live = not e.expires or now < e.expires
                    if covered and live and e.scope.applies(namespace, workload):
                        yield e, suffix

        return _pick(candidates())


def evaluate_directly(
    policy: OperatorPolicy,
    verdicts: Iterable[Mapping[str, Any]],
    qname: str,
    namespace: str,
    workload: str = "",
    now: float = 0.0,
) -> PolicyAnswer:
    """The same decision, straight from the rules (no compilation, no index):
    the reference the compiled matchers are tested against."""
    qname = qname.lower().rstrip(".")

    def covers(match: str, name: str) -> str | None:
        if match == "exact":
            return name if qname == name else None
        if name == ROOT or qname == name or qname.endswith("." + name):
            return name
        return None

    def live(expires: float) -> bool:
        return not expires or now < expires

    found: list[tuple[Entry, str]] = []
    for m in policy.modes:
        if m.mode == "default-deny" and m.scope.applies(namespace, workload):
            found.append(
                (
                    Entry("o", m.scope, "suffix", ROOT, m.action, 0.0, f"default-deny {m.scope}"),
                    ROOT,
                )
            )
    for r in policy.rules:
        if not r.scope.applies(namespace, workload) or not live(r.expires):
            continue
        if r.match == "category":
            cat = policy.categories[r.value]
            for domain in cat.domains:
                on = covers(cat.match, domain)
                if on is not None:
                    found.append(
                        (
                            Entry(
                                "o", r.scope, cat.match, domain, r.action, r.expires, r.describe()
                            ),
                            on,
                        )
                    )
        else:
            on = covers(r.match, r.value)
            if on is not None:
                found.append(
                    (Entry("o", r.scope, r.match, r.value, r.action, r.expires, r.describe()), on)
                )
    for v in verdicts:
        e = verdict_entry(v)
        on = covers(e.match, e.name)
        if on is not None and e.scope.applies(namespace, workload) and live(e.expires):
            found.append((e, on))
    return _pick(found)
