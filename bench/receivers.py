"""What the filter benchmarks ship their events to, and waiting for a server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DNSBENCH = ROOT / "filter" / "target" / "release" / "dnsbench"


def wait_ready(url: str, expect: bytes | None = None) -> None:
    """Until ``url`` answers (with ``expect`` as its body, if given); 20 s at most."""
    for _ in range(200):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if expect is None or r.read().strip() == expect:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def events_receiver(kind: str, port: int, token: str, work: Path) -> subprocess.Popen[bytes]:
    """The server the filters ship events to on ``port``: ``sink`` (``dnsbench
    sink``, reads every POST in full and answers 202: in a cluster the
    collector runs on other nodes) or ``dnsguard`` (the real collector, JSONL
    sink under ``work``, sharing this machine's cores)."""
    if kind != "dnsguard":
        return subprocess.Popen([str(DNSBENCH), "sink", str(port)])
    env = dict(os.environ, DNSGUARD_COLLECTOR_PORT=str(port), DNSGUARD_COLLECTOR_TOKEN=token)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "collector",
            "--sink",
            f"jsonl:{work / 'events.jsonl'}",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/healthz")
    return proc
