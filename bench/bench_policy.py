"""What enforcement costs on the DNS path, and what a big policy costs to ship.

Three Envoys (one worker thread each) in interleaved rounds against the same
canned responder, driven by ``dnsbench load`` (4 connections x 8 queries in
flight; names ``q<n>.bench<k>.example.com``, none of them blocked, so every
query pays the full lookup and still goes upstream):

* ``observe``: the filter without a feed (events only: the PR-4 baseline);
* ``enforce, empty policy``: with a feed, but no rules;
* ``enforce, large policy``: an operator policy of RULES rules (exact and
  suffix; allow, block and log; global, namespace and workload scopes; some
  under ``example.com`` so lookups probe real buckets) plus one category of
  CATEGORY_ENTRIES domains blocked everywhere, compiled by the same code as
  ``dnsguard policy apply`` and rendered as the feed server renders it.

A static feed server in this process serves each Envoy a signed snapshot.
Also measured: snapshot size and the time from a new version being served to
the Envoy reporting it (``feed_version``), for the large policy.

Run: ``.venv/bin/python -m bench.bench_policy``; RULES (default 100000),
CATEGORY_ENTRIES (default 1000000), BENCH_ROUNDS (5), BENCH_SECONDS (3).
Writes bench/results/policy.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from aiohttp import web

from bench.bench_filter import cpu_seconds, load
from bench.receivers import DNSBENCH, wait_ready
from streams.policy.feed import render_snapshot
from streams.policy.signing import SigningKey
from streams.stack.envoy import FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import free_ports
from streams.stack.services import envoy_binary

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results" / "policy.json"
RULES = int(os.environ.get("RULES", "100000"))
CATEGORY_ENTRIES = int(os.environ.get("CATEGORY_ENTRIES", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIGNER, _ = SigningKey.generate("bench")
KEY = (SIGNER.id, SIGNER.public_b64)
TOKEN = "bench-token-0123456789"


def large_policy(rules: int, category: int, version: int) -> bytes:
    from detectors.operator_policy import Category, OperatorPolicy, Rule, Scope, compile_policy

    scopes = [Scope(), Scope("team1"), Scope("team2", "api")]
    actions = ["nxdomain", "allow", "refused", "log"]
    rule_list = [
        Rule(scopes[i % 3], "suffix" if i % 2 else "exact",
             f"r{i}.{'example.com' if i % 10 == 0 else f'zone{i % 1000}.test'}", actions[i % 4], 0.0, "", i)
        for i in range(rules)
    ]  # fmt: skip
    rule_list.append(Rule(Scope(), "category", "ads", "nxdomain", 0.0, "", rules))
    ads = Category("ads", frozenset(f"c{i}.ads{i % 5000}.test" for i in range(category)))
    entries = [
        e.as_dict() for e in compile_policy(OperatorPolicy(tuple(rule_list), (), {"ads": ads}))
    ]
    return render_snapshot(version, entries, time.time())


class StaticFeed:
    """Serves one signed body per path; swap bodies to publish a new version."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: dict[str, bytes] = {}
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def serve(request: web.Request) -> web.Response:
            body = self.bodies[request.path]
            version = body.split(b"\t", 3)[2].decode()
            if request.headers.get("If-None-Match") == f'"{version}"':
                return web.Response(status=304)
            return web.Response(body=body, headers={"X-Dnsguard-Signature": SIGNER.sign(body)})

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/{name}", serve)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)


def stats(admin: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=dnsguard&format=json") as r:
        return {
            s["name"].removeprefix("wasmcustom.dnsguard."): s.get("value", 0)
            for s in json.load(r)["stats"]
            if "name" in s
        }


def main() -> None:
    if not DNSBENCH.exists():
        subprocess.run(
            ["/usr/bin/cargo", "build", "--release", "-q", "-p", "dnsbench"],
            cwd=ROOT / "filter",
            check=True,
        )
    work = Path(tempfile.mkdtemp(prefix="dnsguard-policy-"))
    upstream, collector, feed_port = free_ports(3)
    feed = StaticFeed(feed_port)
    t = time.perf_counter()
    big = large_policy(RULES, CATEGORY_ENTRIES, 1)
    render_s = time.perf_counter() - t
    feed.bodies = {"/empty": render_snapshot(1, [], time.time()), "/large": big}
    procs: list[subprocess.Popen[bytes]] = [
        subprocess.Popen([str(DNSBENCH), "serve", str(upstream)])
    ]
    envs: dict[str, dict[str, int]] = {}
    try:
        env = dict(
            os.environ, DNSGUARD_COLLECTOR_PORT=str(collector), DNSGUARD_COLLECTOR_TOKEN=TOKEN
        )
        procs.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "collector", "--sink", f"jsonl:{work / 'events.jsonl'}"],
                                      env=env, cwd=ROOT, stdout=subprocess.DEVNULL))  # fmt: skip
        wait_ready(f"http://127.0.0.1:{collector}/healthz")
        for label, path in (
            ("observe", None),
            ("enforce, empty policy", "/empty"),
            ("enforce, large policy", "/large"),
        ):
            admin, dns_port = free_ports(2)
            ports = FilterPorts(admin=admin, dns_tcp=dns_port, upstream_dns=upstream, collector=collector,
                                feed=feed_port if path else None)  # fmt: skip
            opts = FilterOptions(
                token=TOKEN,
                queue_max=100_000,
                feed_keys=(KEY,),
                feed_token=TOKEN,
                feed_max_bytes=256 << 20,
            )
            cfg = filter_bootstrap(ports, opts)
            if path:
                for lst in cfg["static_resources"]["listeners"]:
                    for f in lst["filter_chains"][0]["filters"]:
                        if f["name"] == "envoy.filters.network.wasm":
                            conf = f["typed_config"]["config"]["configuration"]
                            c = json.loads(conf["value"])
                            c["feed"]["path"] = path
                            c["feed"]["max_rules"] = RULES + CATEGORY_ENTRIES + 10
                            conf["value"] = json.dumps(c)
            (work / f"{admin}.yaml").write_text(yaml.safe_dump(cfg))
            t0 = time.perf_counter()
            p = subprocess.Popen([str(envoy_binary()), "-c", str(work / f"{admin}.yaml"), "--use-dynamic-base-id",
                                  "--concurrency", "1", "-l", "error"])  # fmt: skip
            procs.append(p)
            wait_ready(f"http://127.0.0.1:{admin}/ready", b"LIVE")
            if path:
                while stats(admin).get("feed_version", 0) < 1:
                    time.sleep(0.05)
            envs[label] = {
                "pid": p.pid,
                "port": dns_port,
                "admin": admin,
            }
        for e in envs.values():
            load(e["port"], 4, 8)  # warm up
        rounds: dict[str, list[dict[str, float]]] = {k: [] for k in envs}
        labels = list(envs)
        for r in range(ROUNDS):
            for label in labels[r % 3 :] + labels[: r % 3]:
                e = envs[label]
                c0 = cpu_seconds(e["pid"])
                res = load(e["port"], 4, 8)
                res["envoy_cpu_us_per_query"] = (
                    (cpu_seconds(e["pid"]) - c0) * 1e6 / max(res["answered"], 1)
                )
                rounds[label].append(res)
        # a new version of the large policy: time until the Envoy reports it applied
        large = envs["enforce, large policy"]
        feed.bodies["/large"] = big.replace(b"\tsnapshot\t1\t", b"\tsnapshot\t2\t", 1)
        t0 = time.perf_counter()
        while stats(large["admin"]).get("feed_version", 0) < 2:
            time.sleep(0.02)
        apply_s = time.perf_counter() - t0
        final = {k: stats(e["admin"]) for k, e in envs.items()}
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(20)

    med = {k: {m: statistics.median(x[m] for x in v) for m in ("qps", "p50_us", "p99_us", "envoy_cpu_us_per_query")}
           for k, v in rounds.items()}  # fmt: skip
    base, empty, large_m = (
        med["observe"],
        med["enforce, empty policy"],
        med["enforce, large policy"],
    )
    summary = {
        "rules": RULES + CATEGORY_ENTRIES,
        "snapshot_bytes": len(big),
        "compile_and_render_s": round(render_s, 2),
        "new_version_applied_s": round(apply_s, 2),
        "added_cpu_us_enforce_empty_vs_observe": round(
            empty["envoy_cpu_us_per_query"] - base["envoy_cpu_us_per_query"], 2
        ),
        "added_cpu_us_large_vs_empty_policy": round(
            large_m["envoy_cpu_us_per_query"] - empty["envoy_cpu_us_per_query"], 2
        ),
        "qps_ratio_large_vs_empty": round(large_m["qps"] / empty["qps"], 3),
    }
    print(f"DNS over TCP, 4 connections x 8 in flight; {ROUNDS} interleaved rounds, medians")
    print(
        f"{'filter':24s} {'queries/s':>11s} {'p50 us':>8s} {'p99 us':>8s} {'Envoy CPU us/query':>19s}"
    )
    for k, m in med.items():
        print(
            f"{k:24s} {m['qps']:11,.0f} {m['p50_us']:8.0f} {m['p99_us']:8.0f} {m['envoy_cpu_us_per_query']:19.2f}"
        )
    print(f"large policy: {summary['rules']:,} rules, snapshot {summary['snapshot_bytes'] / 1e6:.1f} MB, "
          f"new version applied in Envoy {apply_s:.2f} s")  # fmt: skip
    print(f"large vs empty policy: +{summary['added_cpu_us_large_vs_empty_policy']:.2f} us CPU/query (target <= 1); "
          f"enforcing vs observing: +{summary['added_cpu_us_enforce_empty_vs_observe']:.2f} us")  # fmt: skip
    OUT.write_text(
        json.dumps({"summary": summary, "medians": med, "rounds": rounds, "stats": final}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
