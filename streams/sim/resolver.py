"""A small authoritative-style DNS upstream over TCP and DoH, for tests and demos.

It answers from a rule table and records every query it receives, so tests
can assert what reached the resolver (and what a filter kept from it):

* names starting ``nx-`` (or with a label prefix in ``nxdomain_prefixes``, or
  under a name listed in ``nxdomain``) get NXDOMAIN;
* names starting ``slow-`` are answered after ``slow_delay_s`` (pipelined
  queries then come back out of order);
* names starting ``noanswer-`` get no answer at all;
* every other A/AAAA/TXT query gets a deterministic answer derived from the name.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from aiohttp import web


def address_for(name: str) -> str:
    h = hashlib.sha256(name.encode()).digest()
    return f"10.{h[0]}.{h[1]}.{h[2] or 1}"


def question_key(wire: bytes) -> bytes | None:
    """Transaction id plus the first question (name lower-cased), for replaying
    recorded answers; None if the question cannot be read without decompression."""
    pos = 12
    labels = bytearray()
    while pos < len(wire):
        n = wire[pos]
        if n == 0:
            end = pos + 5
            return wire[:2] + bytes(labels).lower() + wire[pos:end] if end <= len(wire) else None
        if n & 0xC0:
            return None
        labels += wire[pos : pos + 1 + n]
        pos += 1 + n
    return None


@dataclass
class Upstream:
    nxdomain: set[str] = field(default_factory=set)
    nxdomain_prefixes: tuple[str, ...] = ("nx-",)
    # recorded answers (from a capture) by question_key(): replayed verbatim
    recorded: dict[bytes, bytes] = field(default_factory=dict)
    slow_delay_s: float = 0.3
    ttl: int = 300
    received: list[tuple[str, str, str]] = field(default_factory=list)  # (transport, name, type)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _under_nxdomain(self, name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.nxdomain for i in range(len(labels)))

    async def answer(self, wire: bytes, transport: str) -> bytes | None:
        key = question_key(wire)
        if key is not None and key in self.recorded:
            with self._lock:
                self.received.append((transport, "(recorded)", ""))
            return self.recorded[key]
        try:
            q = dns.message.from_wire(wire)
        except Exception:  # a broken query gets FORMERR, as a resolver would
            if len(wire) >= 2:
                return wire[:2] + b"\x80\x01" + b"\x00" * 8
            return None
        question = q.question[0] if q.question else None
        name = question.name.to_text(omit_final_dot=True).lower() if question is not None else ""
        rtype = question.rdtype if question is not None else dns.rdatatype.A
        with self._lock:
            self.received.append((transport, name, dns.rdatatype.to_text(rtype)))
        if name.startswith("noanswer-"):
            return None
        if name.startswith("slow-"):
            await asyncio.sleep(self.slow_delay_s)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        if name.startswith(self.nxdomain_prefixes) or self._under_nxdomain(name):
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif question is not None:
            if rtype == dns.rdatatype.A:
                r.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", "A", address_for(name))
                )
            elif rtype == dns.rdatatype.AAAA:
                r.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", "AAAA", "2001:db8::53")
                )
            elif rtype == dns.rdatatype.TXT:
                r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", '"ok"'))
        return r.to_wire()

    # -- DNS over TCP --------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def respond(wire: bytes) -> None:
            out = await self.answer(wire, "tcp")
            if out is not None:
                async with lock:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()

        try:
            while True:
                head = await reader.readexactly(2)
                (length,) = struct.unpack("!H", head)
                wire = await reader.readexactly(length)
                t = asyncio.create_task(respond(wire))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    # -- DNS over HTTPS (cleartext HTTP here; TLS is Envoy's job) -----------------
    async def _doh(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            wire = await request.read()
        else:
            import base64

            value = request.query.get("dns", "")
            wire = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        out = await self.answer(wire, "doh")
        if out is None:
            return web.Response(status=504)
        return web.Response(body=out, content_type="application/dns-message")


class _UdpProtocol(asyncio.DatagramProtocol):
    """DNS over UDP: each datagram answered on its own task."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        async def respond() -> None:
            out = await self.upstream.answer(data, "udp")
            if out is not None and self.transport is not None:
                self.transport.sendto(out, addr)

        t = asyncio.get_running_loop().create_task(respond())
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)


class UpstreamServer:
    """Runs an :class:`Upstream` on its own thread and event loop: DNS over TCP
    and UDP on ``tcp_port`` (the same number for both), DoH on ``doh_port``."""

    def __init__(
        self, upstream: Upstream, tcp_port: int, doh_port: int, host: str = "127.0.0.1"
    ) -> None:
        self.upstream = upstream
        self.tcp_port = tcp_port
        self.doh_port = doh_port
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dns-upstream", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self.upstream._tcp_client, self.host, self.tcp_port)
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _UdpProtocol(self.upstream), local_addr=(self.host, self.tcp_port)
        )
        app = web.Application()
        app.router.add_route("*", "/dns-query", self.upstream._doh)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.doh_port).start()
        self._ready.set()
        await self._stop.wait()
        udp.close()
        server.close()
        await server.wait_closed()
        await runner.cleanup()

    def __enter__(self) -> UpstreamServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("DNS upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


def recorded_answers(packets: Iterable[bytes]) -> dict[bytes, bytes]:
    """The responses among ``packets`` (DNS wire messages from a capture), by
    :func:`question_key`: what a replay resolver answers with."""
    out: dict[bytes, bytes] = {}
    for wire in packets:
        if len(wire) >= 12 and wire[2] & 0x80 and (key := question_key(wire)) is not None:
            out[key] = wire
    return out
