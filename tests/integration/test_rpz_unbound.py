"""The published RPZ zone in a real resolver: Debian's unbound loads it, answers
NXDOMAIN for blocked names (and their subdomains for suffix verdicts), drops
what is published as rpz-drop, and resolves everything else normally
(forwarded to a test upstream over TCP)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from redis.asyncio import Redis

from detectors.verdicts import Verdict
from streams.policy.store import write_verdicts
from streams.sim.resolver import Upstream, UpstreamServer, address_for
from streams.stack.processes import free_ports

pytestmark = pytest.mark.integration

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def unbound_conf(work: Path, port: int, upstream_port: int, zone: Path) -> str:
    return f"""
server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{work}"
  pidfile: "{work}/unbound.pid"
  use-syslog: no
  logfile: "{work}/unbound.log"
  verbosity: 1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "respip iterator"
  qname-minimisation: no
rpz:
  name: rpz.dnsguard.
  zonefile: "{zone}"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream_port}
  forward-tcp-upstream: yes
"""


def test_unbound_enforces_the_published_rpz_zone(redis_url: str, tmp_path: Path) -> None:
    if not Path(UNBOUND).exists():
        raise RuntimeError("unbound is missing: deploy/local/setup.sh installs it")
    db_url = redis_url.rsplit("/", 1)[0] + "/8"
    now = time.time()
    verdicts = [
        Verdict("*", "bad-dga.example.net", "suffix", "nxdomain", "dga", 0.99, "t", now, now + 600),
        Verdict("*", "drop.example.net", "exact", "refused", "tunnel", 0.9, "t", now, now + 600),
        Verdict(
            "ns:shop", "ns-only.example.net", "suffix", "nxdomain", "dga", 0.99, "t", now, now + 600
        ),
    ]

    async def seed() -> None:
        r = Redis.from_url(db_url)
        await r.flushdb()
        await write_verdicts(r, verdicts)
        await r.aclose()

    asyncio.run(seed())
    out = tmp_path / "published"
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "publish", "--out", str(out)],
        env={"DNSGUARD_REDIS_URL": db_url, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    zone = out / "dnsguard.rpz"
    port, up, up_doh = free_ports(3)
    (tmp_path / "unbound.conf").write_text(unbound_conf(tmp_path, port, up, zone))
    upstream = Upstream()
    with UpstreamServer(upstream, up, up_doh):
        proc = subprocess.Popen([UNBOUND, "-d", "-c", str(tmp_path / "unbound.conf")])
        try:

            def ask(name: str, timeout: float = 3) -> dns.message.Message:
                return dns.query.udp(
                    dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout
                )

            deadline = time.monotonic() + 15
            while True:
                try:
                    ok = ask("fine.example.net", timeout=1)
                    break
                except (dns.exception.Timeout, ConnectionRefusedError):
                    assert proc.poll() is None, (tmp_path / "unbound.log").read_text()
                    assert time.monotonic() < deadline, "unbound did not start"
            assert ok.rcode() == dns.rcode.NOERROR
            assert ok.answer[0][0].address == address_for("fine.example.net")
            assert ask("bad-dga.example.net").rcode() == dns.rcode.NXDOMAIN
            assert ask("www.bad-dga.example.net").rcode() == dns.rcode.NXDOMAIN
            with pytest.raises(dns.exception.Timeout):
                ask("drop.example.net", timeout=1.5)
            # namespace verdicts are not published into the (global) zone
            assert ask("ns-only.example.net").rcode() == dns.rcode.NOERROR
            seen = {n for _, n, _ in upstream.received}
            assert "fine.example.net" in seen
            assert "ns-only.example.net" in seen
            assert not {"bad-dga.example.net", "www.bad-dga.example.net", "drop.example.net"} & seen
        finally:
            proc.terminate()
            proc.wait(10)
