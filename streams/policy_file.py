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
```
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from detectors.operator_policy import (
    BLOCKING,
    ROOT,
    RULE_ACTIONS,
    Category,
    OperatorPolicy,
    Rule,
    Scope,
    ScopeMode,
)
from streams.errors import ConfigError

FORMATS = ("auto", "hosts", "plain", "adblock", "rpz")
DEFAULT_MAX_ENTRIES = 1_000_000
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NAME_KEYS = ("exact", "suffix", "category")


class PolicyError(ConfigError):
    """A policy file or list that cannot be used; the message points at the line."""


def valid_domain(s: str) -> str | None:
    """The lower-case name without trailing dot, or None if it is not a domain name."""
    s = s.strip().lower().rstrip(".")
    if not s or len(s) > 253:
        return None
    return s if all(_LABEL.match(label) for label in s.split(".")) else None


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
            if domain is None or "." not in domain:  # a list never blocks a whole TLD
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
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {"__line__": node.start_mark.line + 1}
        for k, v in node.value:
            out[yaml.safe_load(yaml.serialize(k))] = _lines(v)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_lines(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node))


def _scope(value: Any, line: int) -> Scope:
    if value in (None, "global"):
        return Scope()
    if not isinstance(value, dict):
        raise PolicyError(
            f"line {line}: scope must be global or a mapping with namespace (and workload)"
        )
    extra = set(value) - {"namespace", "workload", "__line__"}
    if extra:
        raise PolicyError(f"line {line}: unknown scope field(s) {sorted(extra)}")
    ns, wl = value.get("namespace"), value.get("workload")
    if not isinstance(ns, str) or not ns or "/" in ns:
        raise PolicyError(f"line {line}: scope needs a namespace (a workload scope needs both)")
    if wl is not None and (not isinstance(wl, str) or not wl or "/" in wl):
        raise PolicyError(f"line {line}: workload must be a non-empty name")
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
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise PolicyError(
            f"{source}: {where}: not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from exc
    doc = _lines(node) if node is not None else {"__line__": 1}
    try:
        return _build(doc, base)
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
