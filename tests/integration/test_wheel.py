"""A plain install works: the wheel, installed into a fresh virtualenv without
the dev extras, runs every runtime command against the real Kafka and Redis.

The virtualenv has none of the test or dev tools (pytest, hypothesis, ruff,
mypy, jsonschema, wordsegment); pip takes the dependencies from its cache,
which ``make setup`` fills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from streams.stack.processes import Child, free_ports, wait_http

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("pytest", "hypothesis", "ruff", "mypy", "jsonschema", "wordsegment")


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = work.glob("dnsguard-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return venv


def run(venv: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    out = subprocess.run([str(venv / "bin" / "dnsguard"), *args], capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})), cwd=cwd or ROOT.parent, timeout=300)  # fmt: skip
    assert out.returncode == 0, (
        f"dnsguard {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


def test_the_wheel_installs_no_dev_tools_and_imports_from_site_packages(plain_venv: Path) -> None:
    py = str(plain_venv / "bin" / "python")
    for module in DEV_ONLY:
        found = subprocess.run([py, "-c", f"import {module}"], capture_output=True, cwd="/")
        assert found.returncode != 0, f"{module} is installed without the dev extra"
    where = subprocess.run([py, "-c", "import streams, models, detectors; print(streams.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/")  # fmt: skip
    assert "site-packages" in where.stdout


def test_offline_commands_work_from_a_plain_install(
    plain_venv: Path, shared_data: Path, tmp_path: Path
) -> None:
    run(plain_venv, "--help")
    # score: the packaged model artifact
    names = tmp_path / "names.txt"
    names.write_text("google.com\nxjwqkzpvhrtqmnb.biz\n")
    scored = run(plain_venv, "score", str(names)).splitlines()
    assert scored[0] == "domain,score"
    assert len(scored) == 3
    # replay: JSONL and a pcap
    from streams.sim.workloads import Simulator

    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        "".join(json.dumps(e) + "\n" for e in Simulator().events(time.time() - 30, 30))
    )
    run(plain_venv, "replay", str(jsonl), "--out", str(tmp_path / "r1"))
    assert (tmp_path / "r1" / "alerts.jsonl").read_text()
    pcap = next((shared_data / "captures" / "tunnels").glob("*.pcap"))
    run(plain_venv, "replay", str(pcap), "--out", str(tmp_path / "r2"), "--namespace", "lab")
    assert (tmp_path / "r2" / "verdicts.jsonl").exists()
    # policy explain and report, without Redis or Kafka
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {suffix: bad.example, action: nxdomain}\n")
    explained = run(plain_venv, "policy", "explain", "www.bad.example", "--namespace", "shop",
                    "--file", str(policy))  # fmt: skip
    assert "nxdomain" in explained
    run(
        plain_venv,
        "report",
        "--events",
        str(jsonl),
        "--no-policy",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert json.loads((tmp_path / "r.json").read_text())


def test_services_start_from_a_plain_install(
    plain_venv: Path, kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = {k: f"wheel{tag}.{k}" for k in ("events", "alerts", "verdicts", "dlq")}
    import asyncio

    from streams.engine.topics import TopicSpec, ensure_topics

    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(t, 1) for t in topics.values()]))
    col, feed, web = free_ports(3)
    keys = run(plain_venv, "keys", "new", "--id", "w1")
    signing = next(line for line in keys.splitlines() if not line.startswith(("#", "{")))
    env = {"DNSGUARD_KAFKA_BOOTSTRAP": kafka_bootstrap, "DNSGUARD_REDIS_URL": redis_url,
           "DNSGUARD_EVENTS_TOPIC": topics["events"], "DNSGUARD_ALERTS_TOPIC": topics["alerts"],
           "DNSGUARD_VERDICTS_TOPIC": topics["verdicts"], "DNSGUARD_DLQ_TOPIC": topics["dlq"],
           "DNSGUARD_COLLECTOR_PORT": str(col), "DNSGUARD_COLLECTOR_TOKEN": "wheel-token-0123456789",
           "DNSGUARD_FEED_PORT": str(feed), "DNSGUARD_FEED_TOKEN": "wheel-feed-token-012345",
           "DNSGUARD_FEED_SIGNING_KEY": signing, "DNSGUARD_WORKER_WEB_PORT": str(web),
           "DNSGUARD_WORKER_APP_ID": f"wheel-{tag}", "DNSGUARD_WORKER_DATA_DIR": str(tmp_path / "w")}  # fmt: skip
    full = dict(os.environ, **env)
    children = [Child([str(plain_venv / "bin" / "dnsguard"), cmd], tmp_path / f"{cmd}.log", full)
                for cmd in ("collector", "feed", "worker")]  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{col}/healthz", timeout=60)
        wait_http(f"http://127.0.0.1:{feed}/healthz", timeout=60)
        wait_http(f"http://127.0.0.1:{web}/metrics", timeout=120)
        run(plain_venv, "publish", "--out", str(tmp_path / "lists"), env=env)
        assert (tmp_path / "lists").is_dir()
        request = urllib.request.Request(f"http://127.0.0.1:{col}/v1/events", data=b"[]",
                                         headers={"authorization": "Bearer wheel-token-0123456789",
                                                  "content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 202
    finally:
        for child in children:
            child.stop()
        logs = {c.args[-1]: c.log_tail() for c in children}
    for cmd, tail in logs.items():
        assert "Traceback" not in tail, f"{cmd}:\n{tail}"
