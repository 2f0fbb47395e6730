"""The verdict store is the services' one edge to Redis: Redis away is one
error of dnsguard's own tree, whatever the call."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from streams.errors import DnsguardError
from streams.policy import store
from streams.stack.processes import free_ports

pytestmark = pytest.mark.unit


def test_redis_away_is_store_unavailable_for_every_call() -> None:
    (port,) = free_ports(1)  # nothing listens there

    async def run() -> list[BaseException]:
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        calls = [
            store.current_version(client),
            store.read_verdicts(client),
            store.full_snapshot(client),
            store.changes_since(client, 1),
            store.prune_expired(client, 0.0),
            store.claim_once(client, ["dnsguard:test"], 10),
        ]
        try:
            return list(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            await client.aclose()

    for outcome in asyncio.run(run()):
        assert isinstance(outcome, store.StoreUnavailable), outcome
        assert isinstance(outcome, DnsguardError)
        assert "ConnectionError" in str(outcome)
