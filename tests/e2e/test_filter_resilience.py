"""The DNS path never waits for the analytics path; the filter survives restarts."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import dns.message
import dns.query
import pytest

from streams.sim.resolver import Upstream, UpstreamServer
from streams.stack.envoy import FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import free_ports
from tests.e2e.conftest import TOKEN, EnvoyProcess, FilterRig, events_for
from tests.e2e.test_filter_events import framed, read_framed, uniq

pytestmark = pytest.mark.e2e


class BlackHole:
    """Accepts connections, reads everything, never answers: a hung collector."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            while await reader.read(65536):
                pass
            writer.close()

        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            await self._stop.wait()
            server.close()
            await server.wait_closed()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> BlackHole:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def hung_collector_envoy(
    wasm_module: Path, tmp_path: Path
) -> Iterator[tuple[EnvoyProcess, FilterPorts, BlackHole]]:
    admin, dns_tcp, up, col, plain = free_ports(5)
    ports = FilterPorts(
        admin=admin, dns_tcp=dns_tcp, upstream_dns=up, collector=col, plain_tcp=plain
    )
    opts = FilterOptions(
        token=TOKEN,
        flush_interval_ms=50,
        batch_size=20,
        queue_max=50,
        collector_timeout_ms=300,
        max_attempts=2,
    )
    with BlackHole(col) as hole, UpstreamServer(Upstream(), up, free_ports(1)[0]):
        envoy = EnvoyProcess(filter_bootstrap(ports, opts, wasm_module), tmp_path).start()
        try:
            yield envoy, ports, hole
        finally:
            envoy.stop()


def _latencies(port: int, n: int) -> list[float]:
    out = []
    for i in range(n):
        q = dns.message.make_query(f"lat{i}-{uniq()}", "A")
        t0 = time.perf_counter()
        r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
        out.append(time.perf_counter() - t0)
        assert r.answer
    return out


def test_hung_collector_neither_slows_nor_breaks_dns(hung_collector_envoy) -> None:  # type: ignore[no-untyped-def]
    envoy, ports, hole = hung_collector_envoy
    baseline = _latencies(ports.plain_tcp, 100)  # same Envoy, tcp_proxy without the filter
    filtered = _latencies(ports.dns_tcp, 300)  # every query answered: none timed out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = envoy.stats()
        if stats.get("events_dropped", 0) > 0 and stats.get("batches_failed", 0) > 0:
            break
        time.sleep(0.1)
    stats = envoy.stats()
    assert hole.connections > 0  # the filter did try to ship
    assert stats["events_dropped"] > 0  # bounded queue: the excess is dropped and counted
    assert stats["batches_failed"] > 0
    assert stats["events_sent"] == 0
    # Not a benchmark: a guard that DNS did not wait on the 300 ms collector timeout.
    assert statistics.median(filtered) < statistics.median(baseline) + 0.05
    assert max(filtered) < 0.3


def test_events_flow_again_after_an_envoy_restart(rig: FilterRig) -> None:
    before = uniq("before-")
    dns.query.tcp(
        dns.message.make_query(before, "A"), "127.0.0.1", port=rig.ports.dns_tcp, timeout=5
    )
    assert events_for(rig.bootstrap, rig.topic, {before})
    rig.envoy.stop()
    rig.envoy.start()
    after = uniq("after-")
    r = dns.query.tcp(
        dns.message.make_query(after, "A"), "127.0.0.1", port=rig.ports.dns_tcp, timeout=5
    )
    assert r.answer
    got = events_for(rig.bootstrap, rig.topic, {after})
    assert got[after][0]["response"]["rcode"] == "NOERROR"


class Recorder(BaseHTTPRequestHandler):
    """A collector that answers 200 at once and notes when each batch came and
    how many events it held."""

    batches: ClassVar[list[tuple[float, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.batches.append((time.monotonic(), len(json.loads(body)["events"])))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_full_batches_go_out_as_the_collector_answers_not_at_the_next_tick(
    wasm_module: Path, tmp_path: Path
) -> None:
    """One batch in flight at a time, a tick every 3 s: the tick sends one
    batch, and each answer sends the next full one at once, so a backlog of
    full batches does not wait a tick each (the part of a batch that is left
    goes at a tick)."""
    admin, dns_tcp, up, col = free_ports(4)
    ports = FilterPorts(admin=admin, dns_tcp=dns_tcp, upstream_dns=up, collector=col)
    opts = FilterOptions(token=TOKEN, flush_interval_ms=3000, batch_size=5, max_inflight=1)
    Recorder.batches = []
    server = ThreadingHTTPServer(("127.0.0.1", col), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with UpstreamServer(Upstream(), up, free_ports(1)[0]):
            envoy = EnvoyProcess(filter_bootstrap(ports, opts, wasm_module), tmp_path).start(1)
            try:
                queries = [dns.message.make_query(uniq("b"), "A") for _ in range(17)]
                with socket.create_connection(("127.0.0.1", dns_tcp), timeout=5) as s:
                    s.sendall(b"".join(framed(q.to_wire()) for q in queries))  # one write
                    for _ in queries:
                        read_framed(s)
                deadline = time.monotonic() + 10
                while sum(n for _, n in Recorder.batches) < 17 and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                envoy.stop()
    finally:
        server.shutdown()
        server.server_close()
    sizes = [n for _, n in Recorder.batches]
    assert sum(sizes) == 17, Recorder.batches
    full = [t for t, n in Recorder.batches if n == 5]
    assert len(full) >= 3, Recorder.batches
    assert full[-1] - full[0] < 1.0, Recorder.batches  # not a tick (3 s) apart each
