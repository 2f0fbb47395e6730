"""``dnsguard resolver`` (replaying a capture's answers) and ``dnsguard simulate``
(workloads' queries over TCP), as the processes an operator runs."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import pytest

from streams.ingest.pcap import read_dns
from streams.sim.resolver import question_key
from streams.stack.processes import free_ports

pytestmark = pytest.mark.integration


def ask(port: int, wire: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        (n,) = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
        return s.recv(n, socket.MSG_WAITALL)


def test_replay_resolver_answers_a_captures_queries_with_its_recorded_responses(
    shared_data: Path,
) -> None:
    pcap = next(p for p in sorted((shared_data / "captures").rglob("*.pcap"))
                if sum(1 for d in read_dns(p) if d.wire[2] & 0x80) >= 2)  # fmt: skip
    packets = [d.wire for d in read_dns(pcap)]
    responses = {question_key(w): w for w in packets if w[2] & 0x80 and question_key(w) is not None}
    query = next(w for w in packets if not w[2] & 0x80 and question_key(w) in responses)
    port, doh = free_ports(2)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "resolver", "--port", str(port),
                             "--doh-port", str(doh), "--pcap", str(pcap)], stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert b"replaying" in proc.stdout.readline()
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = ask(port, query)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer == responses[question_key(query)]
        # a question the capture never saw still gets an answer
        other = dns.message.make_query("not-in-the-capture.example", "A")
        assert dns.message.from_wire(ask(port, other.to_wire())).id == other.id
        # and simulated workloads can use it
        out = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--target", f"127.0.0.1:{port}",
                              "--kind", "browsing", "--kind", "dga", "--rate", "40", "--duration", "1.5", "--pool", "5"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        lines = out.stdout.splitlines()
        assert any(line.startswith("browsing: 60 sent") and "0 errors" in line for line in lines), (
            out.stdout
        )
        assert any(line.startswith("dga: 60 sent") and "0 errors" in line for line in lines), (
            out.stdout
        )
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
