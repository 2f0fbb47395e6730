"""Who asked: the workload identity carried by events, and the policy scopes
built from it, validated where they enter.

Kubernetes names are DNS-1123 labels (namespaces: 1 to 63 of ``[a-z0-9-]``,
alphanumeric at both ends) or DNS-1123 subdomains (pods, workloads, service
accounts: dot-separated labels, at most 253 characters). Any of them may be
empty in an event (a client with no pod, seen by an egress gateway); a scope
needs a real namespace.

Scope keys, as verdicts and the feed spell them: ``*`` (every namespace),
``ns:<namespace>``, ``wl:<namespace>/<workload>``.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from detectors.vocabulary import GLOBAL_SCOPE

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE = re.compile(_LABEL, re.ASCII)
_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
# node id and cluster are free text in Envoy: printable ASCII without spaces
_TOKEN = re.compile(r"[!-~]*", re.ASCII)


def valid_namespace(value: str) -> bool:
    """A Kubernetes namespace name (DNS-1123 label)."""
    return len(value) <= 63 and _NAMESPACE.fullmatch(value) is not None


def valid_object_name(value: str) -> bool:
    """A Kubernetes object name such as a pod or workload (DNS-1123 subdomain)."""
    return len(value) <= 253 and _SUBDOMAIN.fullmatch(value) is not None


def valid_token(value: str, limit: int = 512) -> bool:
    """Printable ASCII without whitespace (Envoy node ids, cluster names)."""
    return len(value) <= limit and _TOKEN.fullmatch(value) is not None


@functools.lru_cache(maxsize=65_536)
def valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def namespace_scope(namespace: str) -> str:
    if not valid_namespace(namespace):
        raise ValueError(f"invalid namespace {namespace!r} (a DNS-1123 label)")
    return f"ns:{namespace}"


def valid_scope(key: str) -> bool:
    """``*``, ``ns:<namespace>`` or ``wl:<namespace>/<workload>`` with valid names."""
    if key == GLOBAL_SCOPE:
        return True
    if key.startswith("ns:"):
        return valid_namespace(key[3:])
    if key.startswith("wl:"):
        ns, sep, wl = key[3:].partition("/")
        return bool(sep) and valid_namespace(ns) and valid_object_name(wl)
    return False
