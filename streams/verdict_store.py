"""Verdicts in Redis: entries with expiry, a monotonically increasing policy
version, and a bounded change log from which feeds serve deltas.

Keys (prefix ``dnsguard:``):

* ``policy:version``  integer, incremented once per write that changes something;
* ``verdicts``        hash ``scope|name`` -> verdict JSON;
* ``verdicts:expiry`` sorted set ``scope|name`` scored by expiry (epoch seconds);
* ``changes``         stream of ``{version, op, key}`` entries, capped at ``changelog_max``.

Writes are idempotent: re-writing a verdict with the same content and an
expiry no later than the stored one changes nothing and bumps no version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from detectors.verdicts import Verdict

PREFIX = "dnsguard:"
VERSION = PREFIX + "policy:version"
VERDICTS = PREFIX + "verdicts"
EXPIRY = PREFIX + "verdicts:expiry"
CHANGES = PREFIX + "changes"

# One round trip, atomic: upsert each verdict unless an equal-or-newer copy is stored.
_UPSERT = """
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
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[#ARGV], '*', 'version', version, 'op', 'upsert', 'key', key)
  end
end
return {changed, version}
"""


def encode(v: Verdict) -> str:
    return json.dumps(v.as_dict(), sort_keys=True, separators=(",", ":"))


async def write_verdicts(
    client: Any, verdicts: Sequence[Verdict], changelog_max: int = 100_000
) -> tuple[int, int]:
    """Upsert verdicts atomically; returns (entries changed, policy version)."""
    if not verdicts:
        version = await client.get(VERSION)
        return 0, int(version or 0)
    args: list[str | float] = []
    for v in verdicts:
        args += [v.key, encode(v), v.expires]
    args.append(changelog_max)
    changed, version = await client.eval(_UPSERT, 4, VERSION, VERDICTS, EXPIRY, CHANGES, *args)
    return int(changed), int(version)


async def read_verdicts(client: Any) -> dict[str, dict[str, Any]]:
    raw = await client.hgetall(VERDICTS)
    return {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}
