"""Live DNS traffic: simulated workloads sending real queries (DNS over UDP,
as stub resolvers do, or over TCP) at a target such as an Envoy listener with
the dnsguard module or filter.

Each :class:`Stream` is one workload kind (browsing, dga, tunnel, nxstorm;
names drawn by :class:`~streams.sim.workloads.Simulator` from the shared data)
sent at ``qps`` from one UDP socket, or over one persistent TCP connection
(reconnecting if it drops);
with ``pool`` it keeps asking the same few names, as a bot retrying its
rendezvous domains does.
Counters say what came back. Used by ``dnsguard simulate``, the demo, tests
and benchmarks.
"""

from __future__ import annotations

import asyncio
import socket
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
TRANSPORTS = ("udp", "tcp")


@dataclass
class Stream:
    kind: str
    host: str
    port: int
    qps: float
    # >0: cycle through the first `pool` names drawn (malware retries its names; browsing revisits)
    pool: int = 0
    transport: str = "udp"
    sent: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.qps <= 0:
            raise ValueError("qps must be > 0")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be udp or tcp, got {self.transport!r}")


class _Tcp:
    """One persistent DNS-over-TCP connection (2-byte length prefix)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Tcp:
        return cls(*await asyncio.open_connection(host, port))

    async def exchange(self, wire: bytes) -> bytes:
        self.writer.write(struct.pack("!H", len(wire)) + wire)
        await self.writer.drain()
        (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        return await self.reader.readexactly(n)

    def close(self) -> None:
        self.writer.close()


class _Udp:
    """A connected UDP socket: one datagram out, the reply with the same id back
    (stale replies to earlier, timed-out queries are skipped)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, host: str, port: int) -> _Udp:
        loop = asyncio.get_running_loop()
        family, kind, proto, _, addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[
            0
        ]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return cls(sock)

    async def exchange(self, wire: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, wire)
        while True:
            answer = await loop.sock_recv(self.sock, 65535)
            if answer[:2] == wire[:2]:
                return answer

    def close(self) -> None:
        self.sock.close()


async def run_stream(
    stream: Stream, sim: Simulator, duration_s: float, timeout_s: float = 3.0
) -> None:
    """Send ``stream``'s queries for ``duration_s`` seconds, paced at its qps."""
    workload = Workload("-", "-", "-", stream.kind, stream.qps)
    start = time.monotonic()
    paused = 0.0  # pauses beyond the pacing (a bot quiet after its C2 resolved)
    drawn: list[tuple[str, str]] = []
    conn: _Tcp | _Udp | None = None
    kind = _Udp if stream.transport == "udp" else _Tcp
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
                    opened: _Tcp | _Udp = await asyncio.wait_for(
                        kind.open(stream.host, stream.port), timeout_s
                    )
                    conn = opened
                answer = await asyncio.wait_for(conn.exchange(wire), timeout_s)
                stream.rcodes[dns.rcode.to_text(dns.message.from_wire(answer).rcode())] += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, dns.exception.DNSException):
                stream.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


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
