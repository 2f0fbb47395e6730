"""DNS over TCP through Envoy: with the dnsguard filter, with tcp_proxy only, and direct.

All three paths run in the same Envoy process (one worker thread), against the
same canned responder (``dnsbench serve``), driven by the same load generator
(``dnsbench load``: CONNS connections x PIPELINE queries in flight), in
interleaved rounds. Two more paths measure the floor under any proxy-wasm
network filter in this Envoy: a module whose callbacks return at once
(``filter/crates/wasm-floor``, "empty"), and the same module copying each
read's bytes in, as any parser must ("read"). One more path runs the native
dynamic module (``libdnsguard_native.so``) as the network filter: the same
crates (dnswire, dnspolicy, dnsflow), no Wasm VM, events shipped by the
module's own thread to the same collector, beside the same module shipping
no events and an empty dynamic module (``filter/crates/native-floor``, every
hook returns at once): the floor of any native network filter. Envoy CPU per query comes from /proc/<pid>/stat
(utime+stime) over each round. The filters ship every event, so shipping is
included in their cost. The events go to ``dnsbench sink`` (reads every POST
in full, answers 202), as in ``bench_udp.py``: in a cluster the collector runs
on other nodes, and on this two-core machine a Python collector taking 150k+
events/s would take the CPU the load generator and Envoy share, measuring the
collector rather than the filters. ``BENCH_COLLECTOR=dnsguard`` ships to the
real collector (JSONL sink) instead.

Run: ``.venv/bin/python -m bench.bench_filter`` (after ``make setup``);
prints a table and writes bench/results/filter.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import yaml

from bench.receivers import DNSBENCH, events_receiver, wait_ready
from streams.stack.envoy import (
    NATIVE_DIR,
    TCP_PROXY,
    FilterOptions,
    FilterPorts,
    filter_bootstrap,
    listener,
    native_module_config,
    native_network_filter,
    wasm_filter,
)
from streams.stack.processes import free_ports
from streams.stack.services import envoy_binary

ROOT = Path(__file__).resolve().parents[1]


FLOOR = ROOT / "filter" / "target" / "wasm32-unknown-unknown" / "release" / "wasm_floor.wasm"
OUT = ROOT / "bench" / "results" / "filter.json"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
# (name, connections, queries in flight per connection; 0 = a new connection per query)
COLLECTOR = os.environ.get("BENCH_COLLECTOR", "sink")
TOKEN = "bench-token-0123456789"
WORKLOADS = (("pipelined", 4, 8), ("query-per-connection", 4, 0))
TICKS = os.sysconf("SC_CLK_TCK")
# the paths set against tcp_proxy in the summary: (path, ratio key tag, CPU key tag)
SUMMARIZED = (
    ("envoy + dnsguard filter", "filter", ""),
    ("envoy + empty wasm filter", "empty_wasm", "_empty_wasm"),
    ("envoy + dnsguard native filter", "native", "_native"),
    ("envoy + native filter, no events", "native_no_events", "_native_no_events"),
    ("envoy + empty native module", "empty_native", "_empty_native"),
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def load(port: int, conns: int, pipeline: int) -> dict[str, float]:
    out = subprocess.run(
        [str(DNSBENCH), "load", str(port), str(conns), str(pipeline), str(SECONDS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    if not DNSBENCH.exists():
        subprocess.run(
            ["/usr/bin/cargo", "build", "--release", "-q", "-p", "dnsbench"],
            cwd=ROOT / "filter",
            check=True,
        )
    if not FLOOR.exists():
        subprocess.run([str(ROOT / "filter" / "build.sh"), "wasm-floor"], check=True)
    subprocess.run([str(ROOT / "filter" / "build.sh"), "native"], check=True)
    subprocess.run([str(ROOT / "filter" / "build.sh"), "native-floor"], check=True)
    admin, filt, plain, upstream, collector, empty, read, native, quiet, bare = free_ports(10)
    work = Path(tempfile.mkdtemp(prefix="dnsguard-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([str(DNSBENCH), "serve", str(upstream)]))
        procs.append(events_receiver(COLLECTOR, collector, TOKEN, work))
        ports = FilterPorts(
            admin=admin,
            dns_tcp=filt,
            upstream_dns=upstream,
            collector=collector,
            plain_tcp=plain,
            native_tcp=native,
        )
        cfg = filter_bootstrap(ports, FilterOptions(token=TOKEN, queue_max=100_000))
        for behaviour, port in (("empty", empty), ("read", read)):  # the floor modules
            floor = wasm_filter("network", f"floor_{behaviour}", f"floor_{behaviour}", behaviour,
                                FLOOR, "floor")  # fmt: skip
            cfg["static_resources"]["listeners"].append(
                listener(f"floor_{behaviour}", port, [floor, TCP_PROXY])
            )
        # the native module shipping no events: its floor (parse, pair, decide)
        silent = native_module_config(ports, FilterOptions())
        del silent["collector"]
        cfg["static_resources"]["listeners"].append(
            listener("native_quiet", quiet, [native_network_filter(silent), TCP_PROXY])
        )
        # a dynamic module whose hooks return at once: the floor of any native filter
        empty_native = native_network_filter({}, module="dnsguard_native_floor")
        cfg["static_resources"]["listeners"].append(
            listener("native_floor", bare, [empty_native, TCP_PROXY])
        )
        (work / "envoy.yaml").write_text(yaml.safe_dump(cfg))
        envoy = subprocess.Popen(
            [
                str(envoy_binary()),
                "-c",
                str(work / "envoy.yaml"),
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "error",
            ],
            env={**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)},
        )
        procs.append(envoy)
        wait_ready(f"http://127.0.0.1:{admin}/ready", b"LIVE")
        load(filt, 4, 8)  # warm up
        paths = {
            "direct": upstream,
            "envoy tcp_proxy": plain,
            "envoy + empty wasm filter": empty,
            "envoy + wasm filter reading data": read,
            "envoy + dnsguard filter": filt,
            "envoy + dnsguard native filter": native,
            "envoy + native filter, no events": quiet,
            "envoy + empty native module": bare,
        }
        rounds: dict[str, dict[str, list[dict[str, float]]]] = {
            w[0]: {k: [] for k in paths} for w in WORKLOADS
        }
        for r in range(ROUNDS):
            for workload, conns, pipeline in WORKLOADS:
                order = list(paths.items())
                order = order[r % len(order) :] + order[: r % len(order)]
                for name, port in order:
                    c0 = cpu_seconds(envoy.pid)
                    res = load(port, conns, pipeline)
                    c1 = cpu_seconds(envoy.pid)
                    res["envoy_cpu_us_per_query"] = (c1 - c0) * 1e6 / max(res["answered"], 1)
                    rounds[workload][name].append(res)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{admin}/stats?filter=dnsguard&format=json"
        ) as resp:
            stats = {s["name"]: s.get("value") for s in json.load(resp)["stats"] if "value" in s}
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)

    results = {}
    for workload, conns, pipeline in WORKLOADS:
        med = {
            k: {
                m: statistics.median(x[m] for x in v)
                for m in ("qps", "p50_us", "p99_us", "envoy_cpu_us_per_query")
            }
            for k, v in rounds[workload].items()
        }
        base = med["envoy tcp_proxy"]
        summary = {}
        for path, tag, cpu_tag in SUMMARIZED:
            m = med[path]
            summary[f"qps_ratio_{tag}_vs_tcp_proxy"] = m["qps"] / base["qps"]
            summary[f"added_envoy_cpu_us_per_query{cpu_tag}"] = (
                m["envoy_cpu_us_per_query"] - base["envoy_cpu_us_per_query"]
            )
        results[workload] = {"medians": med, "summary": summary, "rounds": rounds[workload]}
        shape = (
            f"{conns} connections x {pipeline} in flight"
            if pipeline
            else f"{conns} clients, a new connection per query"
        )
        print(
            f"\nDNS over TCP, {workload}: {shape}; {ROUNDS} interleaved rounds of {SECONDS:.0f}s, "
            f"medians; events to {COLLECTOR}"
        )
        print(
            f"{'path':34s} {'queries/s':>11s} {'p50 us':>8s} {'p99 us':>8s} {'Envoy CPU us/query':>19s}"
        )
        for k, m in med.items():
            cpu = "-" if k == "direct" else f"{m['envoy_cpu_us_per_query']:.2f}"
            print(f"{k:34s} {m['qps']:11,.0f} {m['p50_us']:8.0f} {m['p99_us']:8.0f} {cpu:>19s}")
        print(
            f"filter vs tcp_proxy: {summary['qps_ratio_filter_vs_tcp_proxy']:.3f}x queries/s (target >= 0.88), "
            f"+{summary['added_envoy_cpu_us_per_query']:.2f} us Envoy CPU per query (target <= 8)"
        )
        print(
            f"native filter vs tcp_proxy: {summary['qps_ratio_native_vs_tcp_proxy']:.3f}x queries/s "
            f"(target >= 0.95), +{summary['added_envoy_cpu_us_per_query_native']:.2f} us Envoy CPU per query; "
            f"shipping no events: {summary['qps_ratio_native_no_events_vs_tcp_proxy']:.3f}x, "
            f"+{summary['added_envoy_cpu_us_per_query_native_no_events']:.2f} us; "
            f"floor, an empty native module: {summary['qps_ratio_empty_native_vs_tcp_proxy']:.3f}x, "
            f"+{summary['added_envoy_cpu_us_per_query_empty_native']:.2f} us"
        )
        print(
            f"floor, an empty Wasm filter vs tcp_proxy: {summary['qps_ratio_empty_wasm_vs_tcp_proxy']:.3f}x "
            f"queries/s, +{summary['added_envoy_cpu_us_per_query_empty_wasm']:.2f} us Envoy CPU per query"
        )
    print(
        "\nfilter stats:",
        {k.removeprefix("wasmcustom.dnsguard."): v for k, v in stats.items() if "wasmcustom" in k},
    )
    print(
        "native filter stats:",
        {
            k.removeprefix("dynamicmodulescustom.dnsguard_tcp."): v
            for k, v in stats.items()
            if "dynamicmodulescustom" in k
        },
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"bench": "filter", "collector": COLLECTOR, "workloads": results, "stats": stats},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
