"""``dnsguard demo`` end to end, as a user runs it (shortened): it starts
everything, detects and blocks, writes its outputs, and leaves nothing running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.stack.processes import free_ports

pytestmark = pytest.mark.e2e


def test_demo_detects_blocks_publishes_and_cleans_up(tmp_path: Path) -> None:
    kafka, controller, redis = free_ports(3)
    env = dict(os.environ, DNSGUARD_STATE_DIR=str(tmp_path / "state"), DNSGUARD_KAFKA_PORT=str(kafka),
               DNSGUARD_KAFKA_CONTROLLER_PORT=str(controller), DNSGUARD_REDIS_PORT=str(redis),
               DNSGUARD_KAFKA_HEAP_MB="512", COLUMNS="160")  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "30"], env=env,
                         capture_output=True, text=True, timeout=400)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run,) = (tmp_path / "state" / "demo").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["alerts"].get("infected_client", 0) > 0
    assert summary["alerts"].get("tunnel", 0) > 0
    assert summary["alerts"].get("nxdomain_storm", 0) > 0
    # browsing pods and the exfiltrating pod ask over UDP (the module), the others over TCP
    transport = summary["transport_by_pod"]
    assert {pod for pod, t in transport.items() if t == "udp"} == {
        "web-7d9f",
        "cart-55c2",
        "api-6b4d",
        "etl-9c3e",
    }
    assert all(n > 0 for n in summary["answered_by_pod"].values())
    # the infected pod and the exfiltrating pod (over UDP: the module) get answers
    # from dnsguard; browsing pods never
    blocked = summary["blocked_by_pod"]
    assert blocked["batch-1f0a"] > 0
    assert blocked["etl-9c3e"] > 0
    assert blocked["web-7d9f"] == blocked["cart-55c2"] == blocked["api-6b4d"] == 0
    # ... and raise no alert
    alerted = summary["alerts_by_pod"]
    assert alerted["web-7d9f"] == alerted["cart-55c2"] == alerted["api-6b4d"] == 0
    assert alerted["batch-1f0a"] > 0
    assert summary["rpz_names"] > 0
    assert (run / "blocklist" / "dnsguard.stix.json").exists()
    alerts = (run / "alerts.jsonl").read_text().splitlines()
    assert alerts
    assert json.loads(alerts[0])["class_uid"] == 4003
    for port in (kafka, redis):  # what the demo started, it stopped
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
