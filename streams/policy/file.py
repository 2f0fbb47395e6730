"""Reading the operator policy file (YAML, meant to live in git) and the domain
lists its categories import. Errors name the file and line.

```yaml
categories:
  gambling:
    files: [lists/gambling.txt]   # relative to this file
    format: auto                  # auto | hosts | plain | adblock | rpz
    match: suffix                 # suffix (the domain and below, default) | exact
    max_entries: 1000000          # a bigger list is an error, not a silent cut
scopes:
  - namespace: payments
    mode: default-deny            # or default-allow (the default)
    action: nxdomain              # what a name that is not allowed gets
rules:
  - scope: {namespace: payments}  # omit for global; {namespace, workload} for one workload
    suffix: stripe.com            # or exact: NAME, or category: NAME ("." is the root)
    action: allow                 # allow | nxdomain | refused | sinkhole | log
    expires: 2027-01-01T00:00:00Z # optional
    comment: card payments
  - suffix: zip                   # a public suffix (or the root) is blocked only with
    action: nxdomain              #   force: true, so a typo cannot black-hole a TLD
    force: true
```

The file is read defensively: at most ``MAX_POLICY_BYTES``, no YAML aliases
(so no alias bombs), nesting and node counts bounded, only the standard YAML
tags; names are checked with the one name rule (``detectors.dnsname``),
namespaces and workloads as Kubernetes names. Every error names the file and
the line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from detectors.dnsname import InvalidName, canonical_name
from detectors.identity import valid_namespace, valid_object_name
from detectors.names import default_psl
from detectors.operator_policy import (
    ROOT,
    Category,
    OperatorPolicy,
    Rule,
    Scope,
    ScopeMode,
)
from detectors.vocabulary import BLOCKING, GLOBAL_ALIAS, RULE_ACTIONS
from streams.errors import ConfigError

FORMATS = ("auto", "hosts", "plain", "adblock", "rpz")
DEFAULT_MAX_ENTRIES = 1_000_000
MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 200_000
_NAME_KEYS = ("exact", "suffix", "category")
# the tags a policy file may carry (the YAML core schema)
_TAGS = frozenset(
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
)


class PolicyError(ConfigError):
    """A policy file or list that cannot be used; the message points at the line."""


def valid_domain(s: str) -> str | None:
    """The name in canonical form (``detectors.dnsname``), or None if it is
    not a domain name (or is the root)."""
    try:
        name = canonical_name(s.strip())
    except InvalidName:
        return None
    return name or None


class _BoundedLoader(yaml.SafeLoader):
    """A YAML composer that refuses aliases and bounds depth and node count:
    an alias bomb or a deeply nested file fails at once with its line."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise PolicyError(f"line {line}: YAML aliases (*{event.anchor}) are not allowed")
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise PolicyError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
        if self._nodes > MAX_NODES:
            raise PolicyError(f"line {line}: more than {MAX_NODES} YAML nodes")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


def _scalar(node: yaml.ScalarNode) -> Any:
    line = node.start_mark.line + 1
    if node.tag not in _TAGS:
        raise PolicyError(f"line {line}: tag {node.tag!r} is not allowed")
    try:
        return yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError as exc:
        raise PolicyError(f"line {line}: {getattr(exc, 'problem', None) or exc}") from None


# -- category lists ---------------------------------------------------------------


def detect_format(lines: list[str]) -> str:
    for line in lines[:200]:
        t = line.strip()
        if not t or t[0] in "#!;":
            continue
        if t.startswith(("||", "@@")):
            return "adblock"
        if t.startswith("$ORIGIN") or " SOA " in t or "\tSOA\t" in t or " CNAME " in t:
            return "rpz"
        first = t.split()[0]
        try:
            ipaddress.ip_address(first)
            return "hosts"
        except ValueError:
            pass
    return "plain"


def _names_from(fmt: str, lines: Iterable[str]) -> Iterable[str | None]:
    """Candidate names per line (None: a line that is neither comment nor name)."""
    origin = ""
    for raw in lines:
        t = raw.strip()
        if not t or t[0] in "#!;" or t.startswith("@@"):
            continue
        if fmt == "hosts":
            parts = t.split("#", 1)[0].split()
            if len(parts) < 2:
                yield None
                continue
            for name in parts[1:]:
                if name not in ("localhost", "localhost.localdomain", "broadcasthost", "local"):
                    yield name
        elif fmt == "adblock":
            m = re.match(r"^\|\|([^\^/$*]+)\^(\$.*)?$", t)
            if m is None:
                yield None  # cosmetic, path or regex rules are not DNS-level
            else:
                yield m.group(1)
        elif fmt == "rpz":
            if t.startswith("$ORIGIN"):
                origin = t.split()[1].lower().rstrip(".")
                continue
            if t.startswith("$") or t.startswith("@") or " SOA " in t or " NS " in t:
                continue
            owner = t.split()[0].lower().rstrip(".")
            if origin and owner.endswith("." + origin):
                owner = owner[: -len(origin) - 1]
            yield owner[2:] if owner.startswith("*.") else owner
        else:
            parts = t.split("#", 1)[0].split()
            yield parts[0] if len(parts) == 1 else None


def load_category(name: str, spec: dict[str, Any], base: Path, line: int) -> Category:
    files = spec.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise PolicyError(f"line {line}: category {name!r} needs files: [path, ...]")
    fmt = spec.get("format", "auto")
    if fmt not in FORMATS:
        raise PolicyError(
            f"line {line}: category {name!r}: format must be one of {', '.join(FORMATS)}"
        )
    match = spec.get("match", "suffix")
    if match not in ("exact", "suffix"):
        raise PolicyError(f"line {line}: category {name!r}: match must be exact or suffix")
    limit = spec.get("max_entries", DEFAULT_MAX_ENTRIES)
    if not isinstance(limit, int) or limit < 1:
        raise PolicyError(f"line {line}: category {name!r}: max_entries must be a positive integer")
    domains: set[str] = set()
    skipped = 0
    psl = default_psl()
    for f in files:
        path = (base / f).resolve()
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise PolicyError(
                f"line {line}: category {name!r}: cannot read {path}: {exc.strerror}"
            ) from exc
        for candidate in _names_from(detect_format(lines) if fmt == "auto" else fmt, lines):
            domain = valid_domain(candidate) if candidate else None
            if domain is None or psl.is_public_suffix(domain):  # a list never blocks a TLD
                skipped += 1
                continue
            domains.add(domain)
            if len(domains) > limit:
                raise PolicyError(
                    f"line {line}: category {name!r} has more than max_entries={limit} domains ({path})"
                )
    return Category(name, frozenset(domains), match, tuple(files), skipped)


# -- the policy file --------------------------------------------------------------


def _lines(node: yaml.Node) -> Any:
    """The YAML value with each mapping's line (1-based) under the key ``__line__``."""
    line = node.start_mark.line + 1
    if node.tag not in _TAGS:
        raise PolicyError(f"line {line}: tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {"__line__": line}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise PolicyError(f"line {k.start_mark.line + 1}: a key must be a plain value")
            key = _scalar(k)
            if not isinstance(key, str | int | bool | None):
                raise PolicyError(f"line {k.start_mark.line + 1}: a key must be a plain value")
            if key in out:
                raise PolicyError(f"line {k.start_mark.line + 1}: key {key!r} given twice")
            out[key] = _lines(v)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_lines(v) for v in node.value]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node)


def _scope(value: Any, line: int) -> Scope:
    if value is None or value == GLOBAL_ALIAS:
        return Scope()
    if not isinstance(value, dict):
        raise PolicyError(
            f"line {line}: scope must be global or a mapping with namespace (and workload)"
        )
    extra = set(value) - {"namespace", "workload", "__line__"}
    if extra:
        raise PolicyError(f"line {line}: unknown scope field(s) {sorted(extra)}")
    ns, wl = value.get("namespace"), value.get("workload")
    if not isinstance(ns, str) or not ns:
        raise PolicyError(f"line {line}: scope needs a namespace (a workload scope needs both)")
    if not valid_namespace(ns):
        raise PolicyError(f"line {line}: namespace {ns!r} is not a Kubernetes namespace name")
    if wl is not None and (not isinstance(wl, str) or not valid_object_name(wl)):
        raise PolicyError(f"line {line}: workload {wl!r} is not a Kubernetes object name")
    return Scope(ns, wl)


def _expires(value: Any, line: int) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return when.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    if isinstance(value, str):
        try:
            return _expires(dt.datetime.fromisoformat(value.replace("Z", "+00:00")), line)
        except ValueError:
            pass
    raise PolicyError(f"line {line}: expires must be an RFC 3339 time, e.g. 2027-01-01T00:00:00Z")


def parse_policy(text: str, base: Path, source: str = "<policy>") -> OperatorPolicy:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        doc = _lines(node) if node is not None else {"__line__": 1}
        return _build(doc, base)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "line ?"
        problem = getattr(exc, "problem", None) or exc
        raise PolicyError(f"{source}: {where}: not valid YAML: {problem}") from None
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None


def _build(doc: Any, base: Path) -> OperatorPolicy:
    if not isinstance(doc, dict):
        raise PolicyError("line 1: the policy must be a mapping with rules, scopes, categories")
    extra = set(doc) - {"rules", "scopes", "categories", "__line__"}
    if extra:
        raise PolicyError(f"line {doc['__line__']}: unknown top-level key(s) {sorted(extra)}")
    categories: dict[str, Category] = {}
    for name, spec in (doc.get("categories") or {}).items():
        if name == "__line__":
            continue
        line = spec["__line__"] if isinstance(spec, dict) else doc["__line__"]
        if not isinstance(spec, dict):
            raise PolicyError(f"line {line}: category {name!r} must be a mapping")
        unknown = set(spec) - {"files", "format", "match", "max_entries", "__line__"}
        if unknown:
            raise PolicyError(f"line {line}: category {name!r}: unknown field(s) {sorted(unknown)}")
        categories[str(name)] = load_category(str(name), spec, base, line)
    modes: list[ScopeMode] = []
    seen_scopes: set[Scope] = set()
    for item in doc.get("scopes") or []:
        line = item.get("__line__", 0) if isinstance(item, dict) else 0
        if not isinstance(item, dict):
            raise PolicyError(f"line {line}: each scope entry is a mapping")
        unknown = set(item) - {"namespace", "workload", "mode", "action", "__line__"}
        if unknown:
            raise PolicyError(f"line {line}: unknown field(s) {sorted(unknown)}")
        scope = _scope(
            {k: v for k, v in item.items() if k in ("namespace", "workload", "__line__")}, line
        )
        mode = item.get("mode", "default-allow")
        if mode not in ("default-allow", "default-deny"):
            raise PolicyError(f"line {line}: mode must be default-allow or default-deny")
        action = item.get("action", "nxdomain")
        if action not in BLOCKING:
            raise PolicyError(
                f"line {line}: a default-deny action must be one of {sorted(BLOCKING)}"
            )
        if scope in seen_scopes:
            raise PolicyError(f"line {line}: {scope} has a mode already")
        seen_scopes.add(scope)
        modes.append(ScopeMode(scope, mode, action, line))
    rules: list[Rule] = []
    for item in doc.get("rules") or []:
        line = item.get("__line__", 0) if isinstance(item, dict) else 0
        if not isinstance(item, dict):
            raise PolicyError(f"line {line}: each rule is a mapping")
        unknown = set(item) - {
            "scope",
            "exact",
            "suffix",
            "category",
            "action",
            "expires",
            "comment",
            "force",
            "__line__",
        }
        if unknown:
            raise PolicyError(f"line {line}: unknown field(s) {sorted(unknown)}")
        kinds = [k for k in _NAME_KEYS if k in item]
        if len(kinds) != 1:
            raise PolicyError(f"line {line}: a rule needs exactly one of exact, suffix, category")
        kind = kinds[0]
        value = item[kind]
        if not isinstance(value, str):
            raise PolicyError(f"line {line}: {kind} must be a string")
        if kind == "category":
            if value not in categories:
                raise PolicyError(f"line {line}: unknown category {value!r}")
        elif value.strip() == ".":
            value = ROOT
        else:
            name = valid_domain(value)
            if name is None:
                raise PolicyError(f"line {line}: {value!r} is not a domain name")
            value = name
        action = item.get("action")
        if action not in RULE_ACTIONS:
            raise PolicyError(
                f"line {line}: action must be one of {', '.join(sorted(RULE_ACTIONS))}"
            )
        force = item.get("force", False)
        if not isinstance(force, bool):
            raise PolicyError(f"line {line}: force must be true or false")
        if kind != "category" and action in BLOCKING and not force:
            if value == ROOT:
                raise PolicyError(
                    f"line {line}: this rule blocks every name (the root); "
                    "add force: true if that is meant (or use a default-deny scope)"
                )
            if default_psl().is_public_suffix(value):
                raise PolicyError(
                    f"line {line}: {value} is a public suffix, so this rule blocks every "
                    "domain under it; add force: true if that is meant"
                )
        comment = item.get("comment", "")
        rules.append(Rule(_scope(item.get("scope"), line), kind, value, action,
                          _expires(item.get("expires"), line), str(comment or ""), line))  # fmt: skip
    return OperatorPolicy(tuple(rules), tuple(modes), categories)


def load_policy(path: Path) -> OperatorPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_policy(text, path.parent, str(path))
