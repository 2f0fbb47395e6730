"""Live DNS traffic: simulated workloads sending real queries (DNS over TCP)
at a target such as an Envoy listener with the dnsguard filter.

Each :class:`Stream` is one workload kind (browsing, dga, tunnel, nxstorm;
names drawn by :class:`~streams.sim.workloads.Simulator` from the shared data)
sent at ``qps`` over one persistent connection, reconnecting if it drops;
with ``pool`` it keeps asking the same few names, as a bot retrying its
rendezvous domains does.
Counters say what came back. Used by ``dnsguard simulate``, the demo, tests
and benchmarks.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from streams.sim.workloads import Simulator, Workload

KINDS = ("browsing", "dga", "tunnel", "nxstorm")


@dataclass
class Stream:
    kind: str
    host: str
    port: int
    qps: float
    # >0: cycle through the first `pool` names drawn (malware retries its names; browsing revisits)
    pool: int = 0
    sent: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.qps <= 0:
            raise ValueError("qps must be > 0")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wire: bytes
) -> bytes:
    writer.write(struct.pack("!H", len(wire)) + wire)
    await writer.drain()
    (n,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(n)


async def run_stream(
    stream: Stream, sim: Simulator, duration_s: float, timeout_s: float = 3.0
) -> None:
    """Send ``stream``'s queries for ``duration_s`` seconds, paced at its qps."""
    workload = Workload("-", "-", "-", stream.kind, stream.qps)
    start = time.monotonic()
    paused = 0.0  # pauses beyond the pacing (a bot quiet after its C2 resolved)
    drawn: list[tuple[str, str]] = []
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while (due := start + stream.sent / stream.qps + paused) < start + duration_s:
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if stream.pool and len(drawn) >= stream.pool:
                name, qtype = drawn[stream.sent % stream.pool]
            else:
                name, qtype, _, _ = sim.draw(workload)
                drawn.append((name, qtype))
            wire = dns.message.make_query(name, dns.rdatatype.from_text(qtype)).to_wire()
            stream.sent += 1
            paused += sim.gap(workload, name) - 1.0 / stream.qps
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection(stream.host, stream.port), timeout_s
                    )
                answer = await asyncio.wait_for(_exchange(*conn, wire), timeout_s)
                stream.rcodes[dns.rcode.to_text(dns.message.from_wire(answer).rcode())] += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, dns.exception.DNSException):
                stream.errors += 1
                if conn is not None:
                    conn[1].close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def run_streams(
    streams: list[Stream], duration_s: float, sim: Simulator | None = None
) -> None:
    sim = sim or Simulator()
    await asyncio.gather(*(run_stream(s, sim, duration_s) for s in streams))


def parse_target(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host or "127.0.0.1", int(port)
