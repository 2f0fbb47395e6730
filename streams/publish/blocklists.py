"""The blocklist publisher: the policy in Redis as files other resolvers and
tools read.

* ``dnsguard.rpz``: a Response Policy Zone (BIND, Unbound, PowerDNS, Knot).
  SOA serial = policy version. ``nxdomain`` -> ``CNAME .``; ``refused`` ->
  ``CNAME rpz-drop.`` (RPZ has no REFUSED; the closest is to drop), and any
  action listed in ``drop_actions`` likewise; ``sinkhole`` -> the configured
  A/AAAA; ``shadow`` entries are observe-only and not published. A
  ``suffix`` verdict covers the name and ``*.name``.
* ``dnsguard-domains.txt``: the blocked names, one per line.
* ``dnsguard.stix.json``: a STIX 2.1 bundle with one indicator per name
  (ids derived from the verdict key, so republishing keeps them stable).

RPZ and plain lists have no notion of namespaces: only global (``*``)
verdicts go into them (plus one namespace's, if asked). With
``all_namespaces``, each namespace that has verdicts also gets its own set
under ``namespaces/<namespace>/`` (global verdicts plus its own), for
resolvers that serve one namespace. Every file is written
to a temporary name, synced, then renamed over the old one, so readers never
see half a file.

Every entry is checked before it is written (the same check as the feed's,
``verdict_store.entry_fields``: a canonical name that is not the root, a
public suffix or an internal zone, a valid scope and action), and written
with the escapes of its format: canonical names hold only ``[a-z0-9._-]`` and
``\\DDD``, which RPZ master files read as they are; STIX pattern strings
escape ``\\`` and ``'``. An entry that fails, or whose RPZ owner name would be
over 255 octets with the zone's origin, is left out and counted, so one bad
entry never stops a resolver from loading the zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.dnsname import InvalidName, canonical_name, name_octets
from detectors.identity import valid_ip, valid_namespace
from detectors.verdicts import InvalidVerdict
from detectors.vocabulary import BLOCKING
from streams.policy import store as verdict_store
from streams.policy.store import entry_fields

log = logging.getLogger("dnsguard.publish")
_STIX_NS = uuid.UUID("6b3c8f0e-3f7e-4f55-9a7c-2f0d1c8a9e11")  # dnsguard's namespace for STIX ids


@dataclass(frozen=True)
class PublishOptions:
    out_dir: Path
    namespace: str | None = None  # also publish this namespace's verdicts
    drop_actions: frozenset[str] = frozenset({"refused"})
    sinkhole_a: str | None = None
    sinkhole_aaaa: str | None = None
    zone: str = "rpz.dnsguard."
    ttl: int = 60
    all_namespaces: bool = False  # also one set of files per namespace

    def __post_init__(self) -> None:
        try:
            zone = canonical_name(self.zone)
        except InvalidName as exc:
            raise ValueError(f"zone: {exc}") from None
        if not zone:
            raise ValueError("zone: the root cannot be a response policy zone")
        object.__setattr__(self, "zone", zone + ".")
        for what, addr, version in (("sinkhole_a", self.sinkhole_a, 4),
                                    ("sinkhole_aaaa", self.sinkhole_aaaa, 6)):  # fmt: skip
            if addr is not None and not (valid_ip(addr) and (":" in addr) == (version == 6)):
                raise ValueError(f"{what}: not an IPv{version} address: {addr!r}")


@dataclass
class Published:
    version: int
    names: int
    files: list[Path] = field(default_factory=list)
    skipped: int = 0  # entries left out because they were not valid
    namespace_names: dict[str, int] = field(default_factory=dict)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def selected(
    entries: Iterable[Mapping[str, Any]],
    opts: PublishOptions,
    now: float,
    skipped: list[tuple[Mapping[str, Any], str]] | None = None,
) -> list[Mapping[str, Any]]:
    """Live, valid blocking entries in the published scopes, one per (name,
    match), sorted. Invalid entries are left out (and listed in ``skipped``)."""
    scopes = {"*"} | ({f"ns:{opts.namespace}"} if opts.namespace else set())
    zone_octets = name_octets(opts.zone.rstrip("."))
    best: dict[tuple[str, str], Mapping[str, Any]] = {}
    for e in entries:
        try:
            _, scope, _, action, expires, name = entry_fields(e, "d")
        except InvalidVerdict as exc:
            if skipped is not None:
                skipped.append((e, str(exc)))
            continue
        if scope not in scopes or action not in BLOCKING:
            continue
        if expires and expires <= now:
            continue
        # owner "*.<name>.<zone>" must fit in 253 octets
        if name_octets(name) + 2 + 1 + zone_octets > 253:
            if skipped is not None:
                skipped.append((e, f"{name}: too long for an RPZ owner under {opts.zone}"))
            continue
        best.setdefault((name, e["match"]), {**e, "scope": scope, "name": name})
    return [best[k] for k in sorted(best)]


def _rpz_target(e: Mapping[str, Any], opts: PublishOptions) -> list[str]:
    action = e["action"]
    if action in opts.drop_actions:
        return ["CNAME rpz-drop."]
    if action == "sinkhole":
        rrs = []
        if opts.sinkhole_a:
            rrs.append(f"A {opts.sinkhole_a}")
        if opts.sinkhole_aaaa:
            rrs.append(f"AAAA {opts.sinkhole_aaaa}")
        return rrs or ["CNAME ."]  # no sinkhole address configured: NXDOMAIN
    return ["CNAME ."]


def render_rpz(version: int, entries: list[Mapping[str, Any]], opts: PublishOptions) -> bytes:
    lines = [
        f"; dnsguard response policy zone, policy version {version}",
        f"$ORIGIN {opts.zone}",
        f"$TTL {opts.ttl}",
        f"@ SOA localhost. hostmaster.localhost. {version % 2**32} 3600 600 86400 {opts.ttl}",
        "@ NS localhost.",
    ]
    for e in entries:
        owners = [e["name"]] + ([f"*.{e['name']}"] if e["match"] == "suffix" else [])
        for owner in owners:
            for rr in _rpz_target(e, opts):
                lines.append(f"{owner} {rr}")
    return ("\n".join(lines) + "\n").encode()


def render_list(version: int, entries: list[Mapping[str, Any]]) -> bytes:
    names = sorted({e["name"] for e in entries})
    header = f"# dnsguard blocklist, policy version {version}, {len(names)} names\n"
    return (header + "".join(n + "\n" for n in names)).encode()


def _stix_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def stix_string(text: str) -> str:
    """``text`` as a STIX 2.1 pattern string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_stix(version: int, entries: list[Mapping[str, Any]]) -> bytes:
    objects = []
    for e in entries:
        key = f"{e['scope']}|{e['name']}|{e['match']}"
        created = _stix_time(e.get("created") or 0)
        indicator: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(_STIX_NS, key)}",
            "created": created,
            "modified": created,
            "name": f"{e.get('detector', 'dnsguard')}: {e['name']}",
            "description": e.get("reason", ""),
            "indicator_types": ["malicious-activity"],
            "pattern": f"[domain-name:value = {stix_string(e['name'])}]",
            "pattern_type": "stix",
            "valid_from": created,
            "labels": [f"dnsguard:{e.get('detector', 'policy')}", f"action:{e['action']}"],
        }
        if e.get("expires"):
            indicator["valid_until"] = _stix_time(e["expires"])
        if "score" in e:
            indicator["confidence"] = max(0, min(100, round(float(e["score"]) * 100)))
        objects.append(indicator)
    bundle = {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid5(_STIX_NS, f'version:{version}')}",
        "objects": objects,
    }
    return json.dumps(bundle, indent=1, sort_keys=True).encode()


def publish(
    version: int, entries: Iterable[Mapping[str, Any]], opts: PublishOptions, now: float
) -> Published:
    skipped: list[tuple[Mapping[str, Any], str]] = []
    chosen = selected(entries, opts, now, skipped)
    for entry, reason in skipped[:10]:
        log.error("blocklist entry left out: %s: %.200r", reason, dict(entry))
    out = Published(version, len(chosen), skipped=len(skipped))
    _write(out, opts.out_dir, version, chosen, opts)
    if opts.all_namespaces:
        entries = list(entries) if not isinstance(entries, list) else entries
        namespaces = sorted({str(e.get("scope", ""))[3:] for e in entries
                             if str(e.get("scope", "")).startswith("ns:")
                             and valid_namespace(str(e["scope"])[3:])})  # fmt: skip
        for ns in namespaces:
            ns_opts = replace(opts, namespace=ns, all_namespaces=False)
            ns_chosen = selected(entries, ns_opts, now)
            _write(out, opts.out_dir / "namespaces" / ns, version, ns_chosen, ns_opts)
            out.namespace_names[ns] = len(ns_chosen)
    return out


def _write(
    out: Published,
    folder: Path,
    version: int,
    chosen: list[Mapping[str, Any]],
    opts: PublishOptions,
) -> None:
    for name, data in (
        ("dnsguard.rpz", render_rpz(version, chosen, opts)),
        ("dnsguard-domains.txt", render_list(version, chosen)),
        ("dnsguard.stix.json", render_stix(version, chosen)),
    ):
        path = folder / name
        atomic_write(path, data)
        out.files.append(path)


async def publish_from_redis(client: Any, opts: PublishOptions) -> Published:
    version, entries = await verdict_store.snapshot(client)
    return publish(version, entries.values(), opts, time.time())


async def watch(
    client: Any, opts: PublishOptions, interval_s: float = 1.0, stop: asyncio.Event | None = None
) -> None:
    """Republish whenever the policy version changes, until ``stop`` is set."""
    last = -1
    stop = stop or asyncio.Event()
    while not stop.is_set():
        version = await verdict_store.current_version(client)
        if version != last:
            result = await publish_from_redis(client, opts)
            last = result.version
            per_ns = "".join(f", {ns} {n}" for ns, n in result.namespace_names.items())
            print(f"published policy version {result.version}: {result.names} names{per_ns}",
                  flush=True)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
