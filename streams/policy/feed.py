"""The policy feed server: the Redis policy as signed snapshots and deltas.

``GET /v1/policy?since=V&wait_ms=W`` (bearer token) answers with

* ``304`` when the policy is still at version V (after holding the request up
  to W ms, bounded by ``max_wait_ms``, for a change: a long poll, so a new
  verdict reaches every Envoy within milliseconds without tight polling);
* a **delta** from V when the change log still reaches back to V;
* a **snapshot** otherwise (``since=0``, a trimmed log, or a client ahead of us).

Bodies use the format documented in ``filter/crates/dnspolicy`` (one rule per
line) and carry ``X-Dnsguard-Signature: keyid=<id>,alg=ed25519,sig=<base64url>``,
an Ed25519 signature by the feed's private key (``streams.policy.signing``); the
filters hold only the public key. ETag is the version.

Every entry is checked again before it is written into a body
(:func:`detectors.verdicts.check_target`, which the verdict store also
applies): a valid scope, a canonical name, a known match and action, and the
root only for an operator rule. An entry that fails is left out and counted
(``dnsguard_feed_invalid_entries_total``), so one bad entry in Redis never
reaches a filter, and never stops the other entries from doing so. A body over ``max_bytes`` is refused with 503 (the filters keep the
policy they have), as is every request while Redis is unreachable, so the
filters' feed-age stat shows it. Expired verdicts are pruned here, as
logged deletions, so deltas carry them as well.

The server holds no state that matters: run as many as you like.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from detectors.dnsname import is_canonical
from detectors.identity import valid_scope
from detectors.verdicts import InvalidVerdict
from streams.engine.web import serve_app
from streams.policy import store as verdict_store
from streams.policy.signing import SIGNATURE_HEADER
from streams.policy.store import StoreUnavailable, feed_scope
from streams.policy.store import entry_fields as checked
from streams.settings import FeedSettings

log = logging.getLogger("dnsguard.feed")

MAGIC = "dnsguard-policy/1"
CONTENT_TYPE = "text/vnd.dnsguard.policy"
Skipped = Callable[[Mapping[str, Any], str], None]


def rule_line(entry: Mapping[str, Any], origin: str = "d") -> str:
    """One ``+`` record for a verdict (or operator rule) dict; :class:`InvalidVerdict`
    for an entry that must not reach a filter."""
    o, scope, match, action, expires, name = checked(entry, origin)
    return "\t".join(("+", o, scope, match, action, str(expires), name))


def _log_skip(entry: Mapping[str, Any], reason: str) -> None:
    log.error("feed entry left out: %s: %.200r", reason, dict(entry))


def _live(entry: Mapping[str, Any], now: float) -> bool:
    expires = entry.get("expires") or 0
    return not expires or expires > now


def render_snapshot(
    version: int,
    entries: Iterable[Mapping[str, Any]],
    now: float,
    origin: str = "d",
    skipped: Skipped = _log_skip,
) -> bytes:
    """A snapshot with rules grouped by everything but their name (an ``@``
    line, then one TAB-indented name per line): category-sized policies stay
    compact, well under Envoy's limit on a dispatched call's response. An
    invalid entry is left out and reported to ``skipped``."""
    groups: dict[tuple[str, str, str, str, int], list[str]] = {}
    for e in entries:
        if not _live(e, now):
            continue
        try:
            o, scope, match, action, expires, name = checked(e, origin)
        except InvalidVerdict as exc:
            skipped(e, str(exc))
            continue
        groups.setdefault((o, scope, match, action, expires), []).append(name)
    parts = [f"{MAGIC}\tsnapshot\t{version}\t0\t{int(now)}\n"]
    for attrs in sorted(groups):
        parts.append("@\t" + "\t".join(map(str, attrs)) + "\n")
        parts.append("".join(f"\t{name}\n" for name in sorted(groups[attrs])))
    return "".join(parts).encode()


def render_delta(
    since: int,
    version: int,
    changes: Mapping[str, Mapping[str, Any] | None],
    now: float,
    origin: str = "d",
    skipped: Skipped = _log_skip,
) -> bytes:
    """Each changed key travels as ``-`` (drop what the filter holds) then ``+``
    (the current entry, if it still exists and has not expired). A key or entry
    that is not valid is left out and reported to ``skipped``."""
    lines = [f"{MAGIC}\tdelta\t{version}\t{since}\t{int(now)}"]
    for key in sorted(changes):
        value: Any = changes[key]
        kind = "o" if key.startswith("o:") else origin
        scope, _, name = key.removeprefix("o:").partition("|")
        # the deletion's own scope and name must fit the format (a deletion
        # never widens a block, so a name that may not be blocked is fine)
        if not valid_scope(feed_scope(scope)) or not (name in ("", ".") or is_canonical(name)):
            skipped({"key": key}, "invalid scope or name in a change-log key")
            continue
        lines.append(f"-\t{kind}\t{feed_scope(scope)}\t{name or '.'}")
        entries = (value or ()) if kind == "o" else ([value] if value is not None else [])
        for e in entries:
            if not _live(e, now):
                continue
            try:
                lines.append(rule_line(e, kind))
            except InvalidVerdict as exc:
                skipped(e, str(exc))
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    version: Gauge
    body_bytes: Gauge
    pruned: Counter
    invalid: Counter
    insecure: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "dnsguard_feed_requests",
                "Feed requests by outcome (snapshot, delta, not_modified, unauthorized, bad_request, unavailable, too_large)",
                ["outcome"],
                registry=r,
            ),
            version=Gauge(
                "dnsguard_feed_policy_version", "Policy version last seen in Redis", registry=r
            ),
            body_bytes=Gauge(
                "dnsguard_feed_snapshot_bytes", "Size of the last snapshot served", registry=r
            ),
            pruned=Counter(
                "dnsguard_feed_pruned", "Expired verdicts removed from Redis", registry=r
            ),
            invalid=Counter(
                "dnsguard_feed_invalid_entries",
                "Entries in Redis left out of a feed body because they are not valid",
                registry=r,
            ),
            insecure=Gauge(
                "dnsguard_insecure_mode",
                "1 when the service runs without authentication (DNSGUARD_INSECURE=true)",
                registry=r,
            ),
        )


class FeedServer:
    def __init__(self, settings: FeedSettings, client: Any | None = None) -> None:
        self.settings = settings
        self.redis: Any = client or settings.redis_auth.client(settings.redis_url)
        self.metrics = Metrics.create()
        self._key = settings.signing_key
        if settings.insecure:
            self.metrics.insecure.set(1)
            if not settings.token:
                log.warning(
                    "DNSGUARD_INSECURE=true: the feed serves the policy without a token, "
                    "to anyone who can reach it"
                )
        self._version = -1
        self._changed = asyncio.Condition()
        self._snapshot: tuple[int, bytes, str] | None = None  # (version, body, signature)
        self._tasks: list[asyncio.Task[None]] = []

    # -- background: watch the version, prune expired verdicts ---------------

    async def _watch(self) -> None:
        """Notice new versions (one cheap GET per tick for every waiting poll)."""
        while True:
            with contextlib.suppress(StoreUnavailable):
                version = await verdict_store.current_version(self.redis)
                if version != self._version:
                    self._version = version
                    self.metrics.version.set(version)
                    async with self._changed:
                        self._changed.notify_all()
            await asyncio.sleep(self.settings.watch_interval_ms / 1000)

    async def _prune(self) -> None:
        while True:
            try:
                removed, _ = await verdict_store.prune_expired(self.redis, time.time())
                self.metrics.pruned.inc(removed)
            except StoreUnavailable as exc:
                log.warning("pruning expired verdicts failed: %s", exc)
            await asyncio.sleep(self.settings.prune_interval_s)

    async def _wait_for_change(self, version: int, wait_ms: int) -> None:
        if wait_ms <= 0:
            return
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._version != version), wait_ms / 1000
                )

    # -- requests --------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        token = self.settings.token.reveal()
        if not token:
            return self.settings.insecure
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def _skipped(self, entry: Mapping[str, Any], reason: str) -> None:
        self.metrics.invalid.inc()
        _log_skip(entry, reason)

    def _body_response(
        self, version: int, body: bytes, signature: str | None = None
    ) -> web.Response:
        return web.Response(
            body=body,
            headers={
                "Content-Type": CONTENT_TYPE,
                "ETag": f'"{version}"',
                SIGNATURE_HEADER: signature or self._key.sign(body),
                "X-Dnsguard-Version": str(version),
                "Cache-Control": "no-cache",
            },
        )

    async def _snapshot_response(self) -> web.Response:
        cached = self._snapshot
        if cached is not None and cached[0] == await verdict_store.current_version(self.redis):
            # every Envoy asks for the same snapshot after a restart: render it once
            self.metrics.requests.labels("snapshot").inc()
            return self._body_response(cached[0], cached[1], cached[2])
        version, verdicts, operator = await verdict_store.full_snapshot(self.redis)
        body = render_snapshot(
            version, [*verdicts.values(), *operator.values()], time.time(), skipped=self._skipped
        )
        self.metrics.body_bytes.set(len(body))
        if len(body) > self.settings.max_bytes:
            self.metrics.requests.labels("too_large").inc()
            log.error(
                "snapshot of %d bytes exceeds DNSGUARD_FEED_MAX_BYTES=%d; filters keep their policy",
                len(body),
                self.settings.max_bytes,
            )
            return web.json_response({"error": "policy exceeds the feed size bound"}, status=503)
        signature = self._key.sign(body)
        self._snapshot = (version, body, signature)
        self.metrics.requests.labels("snapshot").inc()
        return self._body_response(version, body, signature)

    async def policy(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            self.metrics.requests.labels("unauthorized").inc()
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            since = int(request.query.get("since", "0"))
            wait_ms = min(int(request.query.get("wait_ms", "0")), self.settings.max_wait_ms)
            if since < 0 or wait_ms < 0:
                raise ValueError
        except ValueError:
            self.metrics.requests.labels("bad_request").inc()
            return web.json_response(
                {"error": "since and wait_ms must be non-negative integers"}, status=400
            )
        try:
            version = await verdict_store.current_version(self.redis)
            # nothing newer (an empty store is at version 0, and so is a new filter)
            if since == version:
                await self._wait_for_change(version, wait_ms)
                version = await verdict_store.current_version(self.redis)
                if since == version:
                    self.metrics.requests.labels("not_modified").inc()
                    return web.Response(status=304, headers={"ETag": f'"{version}"'})
            if 0 < since < version:
                version, changes = await verdict_store.changes_since(self.redis, since)
                if changes is not None:
                    body = render_delta(since, version, changes, time.time(), skipped=self._skipped)
                    if len(body) <= self.settings.max_bytes:
                        self.metrics.requests.labels("delta").inc()
                        return self._body_response(version, body)
            return await self._snapshot_response()
        except StoreUnavailable as exc:
            self.metrics.requests.labels("unavailable").inc()
            log.warning("Redis unavailable: %s", exc)
            return web.json_response(
                {"error": "policy store unavailable"}, status=503, headers={"Retry-After": "1"}
            )

    async def metrics_view(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": self._version})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.settings.path, self.policy)
        app.router.add_get("/metrics", self.metrics_view)
        app.router.add_get("/healthz", self.health)

        async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
            self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._prune())]
            yield
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.redis.aclose()

        app.cleanup_ctx.append(lifecycle)
        return app


async def serve(settings: FeedSettings, ready: asyncio.Event | None = None) -> None:
    """Run the feed server until cancelled."""
    await serve_app(FeedServer(settings).app(), settings.host, settings.port, ready)
