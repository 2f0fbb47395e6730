"""DNS over UDP through Envoy: udp_proxy alone against udp_proxy behind the
dnsguard_native module, observing, and enforcing an empty and a large policy.

Five listeners of one Envoy process (one worker thread) forward to the same
canned responder (``dnsbench serve``), driven by the same load generator
(``dnsbench load-udp``: SOCKETS sockets x INFLIGHT queries outstanding), in
interleaved rounds:

* ``udp_proxy`` — the baseline, no module;
* ``module, no events (floor)`` — the module parses and counts every query
  and ships nothing: the cost of a dynamic-module listener filter in this
  Envoy plus the parse, against which the events' and the policy's cost is set;
* ``module, observe`` — the module parses every query and queues its event,
  shipped in batches from the module's thread;
* ``module, enforce (empty policy)`` — the same plus a feed with no rules;
* ``module, enforce (N rules)`` — a feed of N rules (exact and suffix, in the
  pod's namespace and global), none matching the load's names, so every query
  is looked up against the full table and still forwarded.

The feed is a static HTTP server in this process serving one Ed25519-signed
snapshot (the format and signature of ``dnsguard feed``); the modules poll it
every second. Envoy CPU per query comes from /proc/<pid>/stat over each round.

The events go to ``dnsbench sink`` (reads every POST in full, answers 202):
in a cluster the collector runs on other nodes, and on this two-core machine
a Python collector taking 50k events/s would take the CPU the load generator
and Envoy share, measuring the collector rather than the module.
``BENCH_COLLECTOR=dnsguard`` ships to the real collector (JSONL sink) instead.

Run: ``.venv/bin/python -m bench.bench_udp`` (after ``make setup``); prints a
table and writes bench/results/udp.json. ``BENCH_RULES`` sets N (100000).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bench.bench_filter import cpu_seconds
from bench.receivers import DNSBENCH, events_receiver, wait_ready
from streams.policy.feed import render_snapshot
from streams.policy.signing import SigningKey
from streams.stack.envoy import NATIVE_DIR, NATIVE_PATH, udp_listener
from streams.stack.processes import free_ports
from streams.stack.services import envoy_binary

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "udp.json"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
RULES = int(os.environ.get("BENCH_RULES", "100000"))
COLLECTOR = os.environ.get("BENCH_COLLECTOR", "sink")
SOCKETS, INFLIGHT = 4, 8
TOKEN = "bench-token-0123456789"
BASELINE = "udp_proxy"
FLOOR = "module, no events (floor)"


def policy_entries(n: int) -> list[dict[str, Any]]:
    """``n`` rules that never match the load's names (``q<N>.bench<M>.example.com``)."""
    out = []
    for i in range(n):
        scope = "ns:shop" if i % 2 else "*"
        match = "suffix" if i % 3 == 0 else "exact"
        out.append({"origin": "o", "scope": scope, "name": f"r{i}.blocked{i % 1000}.test",
                    "match": match, "action": "nxdomain"})  # fmt: skip
    return out


class StaticFeed:
    """One signed snapshot per path (``/empty``, ``/large``), version 1; 304 once held."""

    def __init__(self, bodies: dict[str, bytes], key: SigningKey) -> None:
        signed = {path: (body, key.sign(body)) for path, body in bodies.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, _ = self.path.partition("?")
                if path not in signed:
                    self.send_error(404)
                    return
                if self.headers.get("If-None-Match") == '"1"':
                    self.send_response(304)
                    self.end_headers()
                    return
                body, signature = signed[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"1"')
                self.send_header("X-Dnsguard-Signature", signature)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def module_config(collector: int | None, feed: tuple[int, str, str] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"node": {"namespace": "shop", "workload": "web", "pod": "web-7d9f"}}
    if collector is not None:
        cfg["collector"] = {"address": f"127.0.0.1:{collector}", "token": TOKEN,
                            "max_queue": 100_000}  # fmt: skip
    if feed is not None:
        port, path, public = feed
        cfg["feed"] = {"address": f"127.0.0.1:{port}", "path": path, "token": TOKEN,
                       "keys": [{"id": "bench", "public_key": public}], "long_poll_ms": 0,
                       "poll_interval_ms": 1000, "max_rules": max(RULES, 1)}  # fmt: skip
    return cfg


def bootstrap(admin: int, upstream: int, listeners: list[dict[str, Any]]) -> dict[str, Any]:
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}
    cluster = {
        "name": "upstream_dns",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream_dns",
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners, "clusters": [cluster]},
    }


def load(port: int) -> dict[str, float]:
    out = subprocess.run(
        [str(DNSBENCH), "load-udp", str(port), str(SOCKETS), str(INFLIGHT), str(SECONDS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def module_stats(admin: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{admin}/stats?filter=dynamicmodulescustom&format=json"
    with urllib.request.urlopen(url) as resp:
        stats = json.load(resp)["stats"]
    return {s["name"]: s["value"] for s in stats if "value" in s}


def main() -> None:
    if not NATIVE_PATH.exists():
        subprocess.run([str(ROOT / "filter" / "build.sh"), "native"], check=True)
    subprocess.run(["/usr/bin/cargo", "build", "--release", "-q", "-p", "dnsbench"],
                   cwd=ROOT / "filter", check=True)  # fmt: skip
    admin, upstream, collector, *listen = free_ports(8)
    key, _ = SigningKey.generate("bench")
    now = time.time()
    feed = StaticFeed(
        {"/empty": render_snapshot(1, [], now), "/large": render_snapshot(1, policy_entries(RULES), now)},
        key,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="dnsguard-bench-udp-"))
    paths = {
        BASELINE: (listen[0], None),
        FLOOR: (listen[4], module_config(None, None)),
        "module, observe": (listen[1], module_config(collector, None)),
        "module, enforce (empty policy)": (
            listen[2], module_config(collector, (feed.port, "/empty", key.public_b64))),
        f"module, enforce ({RULES:,} rules)": (
            listen[3], module_config(collector, (feed.port, "/large", key.public_b64))),
    }  # fmt: skip
    listeners = [
        udp_listener(f"udp{i}", port, module) for i, (port, module) in enumerate(paths.values())
    ]
    cfg = bootstrap(admin, upstream, listeners)
    (work / "envoy.yaml").write_text(yaml.safe_dump(cfg))
    procs: list[subprocess.Popen[bytes]] = []
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
    try:
        procs.append(subprocess.Popen([str(DNSBENCH), "serve", str(upstream)]))
        procs.append(events_receiver(COLLECTOR, collector, TOKEN, work))
        envoy = subprocess.Popen(
            [str(envoy_binary()), "-c", str(work / "envoy.yaml"), "--use-dynamic-base-id",
             "--concurrency", "1", "-l", "error"],
            env={**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)},
        )  # fmt: skip
        procs.append(envoy)
        wait_ready(f"http://127.0.0.1:{admin}/ready", b"LIVE")
        deadline = time.monotonic() + 60  # both enforcing listeners hold the feed
        while module_stats(admin).get("dynamicmodulescustom.dnsguard.feed_updates", 0) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the modules never took the feed")
            time.sleep(0.2)
        rules = module_stats(admin).get("dynamicmodulescustom.dnsguard.policy_rules", 0)
        for port, _ in paths.values():
            load(port)  # warm up
        for r in range(ROUNDS):
            order = list(paths.items())
            order = order[r % len(order) :] + order[: r % len(order)]
            for name, (port, _) in order:
                c0 = cpu_seconds(envoy.pid)
                res = load(port)
                c1 = cpu_seconds(envoy.pid)
                res["envoy_cpu_us_per_query"] = (c1 - c0) * 1e6 / max(res["answered"], 1)
                rounds[name].append(res)
        stats = module_stats(admin)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
        feed.server.shutdown()

    metrics = ("qps", "p50_us", "p99_us", "envoy_cpu_us_per_query", "lost")
    med = {
        k: {m: statistics.median(x.get(m, 0) for x in v) for m in metrics}
        for k, v in rounds.items()
    }
    base = med[BASELINE]
    summary = {
        name: {"qps_ratio_vs_udp_proxy": m["qps"] / base["qps"],
               "added_envoy_cpu_us_per_query": m["envoy_cpu_us_per_query"] - base["envoy_cpu_us_per_query"]}
        for name, m in med.items() if name != BASELINE
    }  # fmt: skip
    print(f"\nDNS over UDP: {SOCKETS} sockets x {INFLIGHT} in flight; {ROUNDS} interleaved rounds "
          f"of {SECONDS:.0f}s, medians; events to {COLLECTOR}; policy_rules gauge {rules:,}")  # fmt: skip
    print(
        f"{'path':<36}{'q/s':>10}{'p50 us':>9}{'p99 us':>9}{'Envoy CPU us/q':>16}{'lost':>7}{'ratio':>8}"
    )
    for name, m in med.items():
        ratio = m["qps"] / base["qps"]
        print(f"{name:<36}{m['qps']:>10,.0f}{m['p50_us']:>9.0f}{m['p99_us']:>9.0f}"
              f"{m['envoy_cpu_us_per_query']:>16.2f}{m['lost']:>7.0f}{ratio:>8.2f}")  # fmt: skip
    for name, s in summary.items():
        print(f"{name}: {s['qps_ratio_vs_udp_proxy']:.2f}x udp_proxy q/s, "
              f"{s['added_envoy_cpu_us_per_query']:+.2f} us Envoy CPU per query")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"collector": COLLECTOR, "sockets": SOCKETS, "inflight": INFLIGHT, "rounds": ROUNDS,
                               "seconds": SECONDS, "rules": RULES, "medians": med,
                               "summary": summary, "module_stats": stats,
                               "all_rounds": rounds}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
