"""Running an aiohttp application until cancelled (the collector, the feed server)."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def serve_app(
    app: web.Application, host: str, port: int, ready: asyncio.Event | None = None
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
