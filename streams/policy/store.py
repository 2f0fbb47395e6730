"""Verdicts in Redis: entries with expiry, a monotonically increasing policy
version, and a bounded change log from which feeds serve deltas.

Keys (prefix ``dnsguard:``):

* ``policy:version``  integer, incremented once per write that changes something;
* ``verdicts``        hash ``scope|name`` -> verdict JSON;
* ``verdicts:expiry`` sorted set ``scope|name`` scored by expiry (epoch seconds);
* ``operator``        hash ``scope|name|match|action`` -> compiled operator rule JSON
  (``dnsguard policy apply``); its changes are logged as ``o:scope|name``;
* ``changes``         stream of ``{version, at, op, key}`` entries (``at``: Redis
  time in ms), capped at
  ``changelog_max``; entry ids are ``<version>-<n>``, so the changes after a
  version are one XRANGE away.

Nothing reaches Redis that could not reach a filter safely: verdicts and
operator entries are checked (:func:`entry_fields`) and a write with an
invalid one raises :class:`~detectors.verdicts.InvalidVerdict` before any
change. Writes are idempotent: re-writing a verdict with the same content and an
expiry no later than the stored one changes nothing and bumps no version.
Expired verdicts are removed by :func:`prune_expired` (the feed server runs
it), which logs them as deletions so deltas carry them too.

This module is the services' one edge to Redis: every function here raises
:class:`StoreUnavailable` (a :class:`~streams.errors.DnsguardError`) when Redis
cannot be reached or answers with an error, and callers catch that alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from detectors.dnsname import is_canonical
from detectors.identity import valid_scope
from detectors.verdicts import InvalidVerdict, Verdict, check_target
from detectors.vocabulary import RULE_ACTIONS, canonical_scope
from streams.errors import DnsguardError


class StoreUnavailable(DnsguardError):
    """Redis could not be reached, or answered a store operation with an error."""


P = ParamSpec("P")
R = TypeVar("R")


def _edge(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Redis's and the socket's errors of ``fn`` as :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{fn.__name__}: {type(exc).__name__}: {exc}") from exc

    return wrapped


_MATCH = {"exact": "e", "suffix": "s"}

PREFIX = "dnsguard:"
VERSION = PREFIX + "policy:version"
VERDICTS = PREFIX + "verdicts"
EXPIRY = PREFIX + "verdicts:expiry"
CHANGES = PREFIX + "changes"
# operator rules compiled from the policy file: ``scope|name|match|action`` -> entry JSON
OPERATOR = PREFIX + "operator"
OPERATOR_META = PREFIX + "operator:meta"

# One round trip, atomic: upsert each verdict unless an equal-or-newer copy is stored.
_UPSERT = """
local function now_ms() local t = redis.call('TIME'); return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)) end
local changed = 0
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, #ARGV - 1, 3 do
  local key, body, expires = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local old = tonumber(redis.call('ZSCORE', KEYS[3], key) or '-1')
  if old < expires then
    if changed == 0 then version = redis.call('INCR', KEYS[1]) end
    changed = changed + 1
    redis.call('HSET', KEYS[2], key, body)
    redis.call('ZADD', KEYS[3], expires, key)
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[#ARGV], version .. '-' .. changed, 'version', version, 'at', now_ms(), 'op', 'upsert', 'key', key)
  end
end
return {changed, version}
"""


# One round trip, atomic: remove verdicts whose expiry has passed, as one new version.
_PRUNE = """
local function now_ms() local t = redis.call('TIME'); return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)) end
local keys = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #keys == 0 then return {0, tonumber(redis.call('GET', KEYS[1]) or '0')} end
local version = redis.call('INCR', KEYS[1])
for i, key in ipairs(keys) do
  redis.call('HDEL', KEYS[2], key)
  redis.call('ZREM', KEYS[3], key)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], version .. '-' .. i, 'version', version, 'at', now_ms(), 'op', 'delete', 'key', key)
end
return {#keys, version}
"""

# Atomic reads: the whole table with its version; or the keys changed after a
# version with their current bodies (``gap`` when the log no longer reaches back).
_SNAPSHOT = """
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""
_DELTA = """
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
if since < version then
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #first == 0 then return {version, 'gap'} end
  local fv, fs = string.match(first[1][1], '^(%d+)-(%d+)$')
  fv, fs = tonumber(fv), tonumber(fs)
  if fv > since + 1 or (fv == since + 1 and fs ~= 1) then return {version, 'gap'} end
end
local seen, out = {}, {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[3], (since + 1) .. '-0', '+')) do
  local f = entry[2]
  local key
  for j = 1, #f, 2 do if f[j] == 'key' then key = f[j + 1] end end
  if key and key ~= '' and not seen[key] then
    seen[key] = true
    out[#out + 1] = key
    if string.sub(key, 1, 2) == 'o:' then
      -- an operator (scope, name): every match kind now stored for it
      local base = string.sub(key, 3)
      local parts = {}
      for _, m in ipairs({'exact', 'suffix'}) do
        for _, a in ipairs({'allow', 'log', 'nxdomain', 'refused', 'sinkhole'}) do
          local v = redis.call('HGET', KEYS[4], base .. '|' .. m .. '|' .. a)
          if v then parts[#parts + 1] = v end
        end
      end
      out[#out + 1] = '[' .. table.concat(parts, ',') .. ']'
    else
      out[#out + 1] = redis.call('HGET', KEYS[2], key) or ''
    end
  end
end
return {version, out}
"""


def feed_scope(scope: str) -> str:
    return canonical_scope(scope)


def entry_fields(entry: Mapping[str, Any], origin: str) -> tuple[str, str, str, str, int, str]:
    """The fields of one feed record, or :class:`InvalidVerdict` if the entry
    could break the format or widen a block: ``(origin, scope, match, action,
    expires, name)`` with the name in the feed's spelling (``.`` for the root)."""
    origin = entry.get("origin", origin)
    scope = feed_scope(str(entry.get("scope", "")))
    name = str(entry.get("name", ""))
    match, action = str(entry.get("match", "")), str(entry.get("action", ""))
    if origin == "o":
        # operator rules: allow/log marks too, and the root (a default-deny scope)
        if not valid_scope(scope) or match not in _MATCH or action not in RULE_ACTIONS:
            raise InvalidVerdict(f"invalid operator entry {scope!r} {match!r} {action!r}")
        if name not in (".", "") and not is_canonical(name):
            raise InvalidVerdict(f"invalid operator rule name {name!r}")
        name = name or "."
    elif origin == "d":
        check_target(scope, name, match, action)
    else:
        raise InvalidVerdict(f"invalid origin {origin!r}")
    try:
        expires = int(entry.get("expires") or 0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidVerdict(f"invalid expiry {entry.get('expires')!r}") from exc
    if not 0 <= expires < 2**63:
        raise InvalidVerdict(f"invalid expiry {expires}")
    return origin, scope, _MATCH[match], action, expires, name


def encode(v: Verdict) -> str:
    return json.dumps(v.as_dict(), sort_keys=True, separators=(",", ":"))


@_edge
async def write_verdicts(
    client: Any, verdicts: Sequence[Verdict], changelog_max: int = 100_000
) -> tuple[int, int]:
    """Upsert verdicts atomically; returns (entries changed, policy version).
    :class:`InvalidVerdict` (nothing written) if any could not reach a filter safely."""
    for v in verdicts:
        check_target(v.scope, v.name, v.match, v.action)
    if not verdicts:
        version = await client.get(VERSION)
        return 0, int(version or 0)
    args: list[str | float] = []
    for v in verdicts:
        args += [v.key, encode(v), v.expires]
    args.append(changelog_max)
    changed, version = await client.eval(_UPSERT, 4, VERSION, VERDICTS, EXPIRY, CHANGES, *args)
    return int(changed), int(version)


@_edge
async def read_verdicts(client: Any) -> dict[str, dict[str, Any]]:
    raw = await client.hgetall(VERDICTS)
    return {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}


@_edge
async def prune_expired(
    client: Any, now: float, limit: int = 10_000, changelog_max: int = 100_000
) -> tuple[int, int]:
    """Remove up to ``limit`` expired verdicts; returns (removed, policy version)."""
    removed, version = await client.eval(
        _PRUNE, 4, VERSION, VERDICTS, EXPIRY, CHANGES, now, limit, changelog_max
    )
    return int(removed), int(version)


def _text(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def _pairs(flat: list[Any]) -> dict[str, Any]:
    it = iter(flat)
    return {_text(k): json.loads(v) for k, v in zip(it, it, strict=True)}


@_edge
async def snapshot(client: Any) -> tuple[int, dict[str, dict[str, Any]]]:
    """The policy version and every stored detector verdict by key, read atomically."""
    version, verdicts, _ = await full_snapshot(client)
    return version, verdicts


@_edge
async def full_snapshot(
    client: Any,
) -> tuple[int, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Version, detector verdicts and operator entries, read atomically."""
    version, verdicts, operator = await client.eval(_SNAPSHOT, 3, VERSION, VERDICTS, OPERATOR)
    return int(version), _pairs(verdicts), _pairs(operator)


@_edge
async def changes_since(
    client: Any, since: int
) -> tuple[int, dict[str, dict[str, Any] | None] | None]:
    """The version and, per key changed after ``since``, its current verdict
    (None when deleted) or, for an operator key ``o:scope|name``, the list of
    its current entries; the changes are None when the log has been trimmed
    past ``since`` (the caller serves a snapshot instead)."""
    version, out = await client.eval(_DELTA, 4, VERSION, VERDICTS, CHANGES, OPERATOR, since)
    if not isinstance(out, list):
        return int(version), None
    pairs = iter(out)
    return int(version), {
        _text(k): (json.loads(v) if v else None) for k, v in zip(pairs, pairs, strict=True)
    }


@_edge
async def current_version(client: Any) -> int:
    return int(await client.get(VERSION) or 0)


# One round trip, atomic: replace the operator rules by a new set (already diffed).
_OPERATOR = """
local function now_ms() local t = redis.call('TIME'); return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)) end
local nset = tonumber(ARGV[1])
local version = redis.call('INCR', KEYS[1])
local n = 0
-- more changes than the log holds: log one reset, so every delta reader gets a snapshot
local reset = (#ARGV - 2 - nset) > tonumber(ARGV[2])
if reset then
  redis.call('DEL', KEYS[3])
  redis.call('XADD', KEYS[3], version .. '-0', 'version', version, 'at', now_ms(), 'op', 'reset', 'key', '')
end
local function log(hkey)
  if reset then return end
  local base = string.match(hkey, '^(.*)|[a-z]+|[a-z]+$')
  n = n + 1
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], version .. '-' .. n, 'version', version, 'at', now_ms(), 'op', 'operator', 'key', 'o:' .. base)
end
for i = 3, 2 + 2 * nset, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  log(ARGV[i])
end
for i = 3 + 2 * nset, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
  log(ARGV[i])
end
redis.call('HSET', KEYS[4], 'version', version)
return version
"""


@_edge
async def operator_entries(client: Any) -> dict[str, dict[str, Any]]:
    raw = await client.hgetall(OPERATOR)
    return {_text(k): json.loads(v) for k, v in raw.items()}


@_edge
async def diff_operator(
    client: Any, entries: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[str]]:
    """(added, changed, removed keys) between the stored operator rules and ``entries``."""
    current = await operator_entries(client)
    added = {k: v for k, v in entries.items() if k not in current}
    changed = {k: v for k, v in entries.items() if k in current and current[k] != v}
    removed = sorted(set(current) - set(entries))
    return added, changed, removed


@_edge
async def write_operator(
    client: Any,
    entries: dict[str, dict[str, Any]],
    meta: dict[str, str],
    changelog_max: int = 100_000,
) -> tuple[int, int]:
    """Make the stored operator rules equal ``entries`` as one new policy version
    (no new version when nothing changes); returns (keys changed, version). A
    change bigger than the change log is logged as one reset (readers get a
    snapshot)."""
    for entry in entries.values():
        entry_fields(entry, "o")
    added, changed, removed = await diff_operator(client, entries)
    upserts = {**added, **changed}
    if not upserts and not removed:
        return 0, int(await client.get(VERSION) or 0)
    args: list[Any] = [len(upserts), changelog_max]
    for k, v in upserts.items():
        args += [k, json.dumps(v, sort_keys=True, separators=(",", ":"))]
    args += removed
    version = await client.eval(_OPERATOR, 4, VERSION, OPERATOR, CHANGES, OPERATOR_META, *args)
    await client.hset(OPERATOR_META, mapping=meta)
    return len(upserts) + len(removed), int(version)


@_edge
async def claim_once(client: Any, keys: Sequence[str], ttl_s: int) -> list[bool]:
    """For each key, whether this call is the first to claim it within ``ttl_s``
    (SET NX with an expiry), in one round trip."""
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(key, b"1", nx=True, ex=ttl_s)
        return [bool(r) for r in await pipe.execute()]
