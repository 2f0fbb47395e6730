"""The README's benchmark table, generated from bench/results/*.json.

``python bench/table.py`` prints it; ``python bench/table.py --write`` puts it
into README.md between the ``bench:start`` / ``bench:end`` markers. A unit
test fails when the README and the results disagree, so the table is never
edited by hand.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

Row = tuple[str, str, str, str, str]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _floor(m: dict[str, Any], b: dict[str, Any]) -> str:
    """The empty and the data-reading Wasm filters: the floor under any Wasm filter."""
    parts = []
    for key, label in (("envoy + empty wasm filter", "empty Wasm filter"),
                       ("envoy + wasm filter reading data", "Wasm filter reading the bytes")):  # fmt: skip
        if key in m:
            parts.append(f"{label}: {m[key]['qps'] / b['qps']:.2f}x q/s, "
                         f"{m[key]['envoy_cpu_us_per_query'] - b['envoy_cpu_us_per_query']:+.2f} us")  # fmt: skip
    return "; ".join(parts)


def filter_rows(d: dict[str, Any]) -> list[Row]:
    rows = []
    for name, shape in (("pipelined", "pipelined DNS/TCP, 4 conns x 8 in flight"),
                        ("query-per-connection", "a new TCP connection per query")):  # fmt: skip
        w = d["workloads"][name]
        m, s = w["medians"], w["summary"]
        f, b = m["envoy + dnsguard filter"], m["envoy tcp_proxy"]
        rows.append((
            f"filter, {shape}", "`bench/bench_filter.py`",
            f"{f['qps']:,.0f} q/s, {f['envoy_cpu_us_per_query']:.2f} us Envoy CPU/query",
            f"tcp_proxy alone: {b['qps']:,.0f} q/s, {b['envoy_cpu_us_per_query']:.2f} us; "
            + _floor(m, b),
            f"+{s['added_envoy_cpu_us_per_query']:.2f} us/query (<= 8: {_met(s['added_envoy_cpu_us_per_query'] <= 8)}); "
            f"{s['qps_ratio_filter_vs_tcp_proxy']:.2f}x q/s (>= 0.88: {_met(s['qps_ratio_filter_vs_tcp_proxy'] >= 0.88)})",
        ))  # fmt: skip
        n = m.get("envoy + dnsguard native filter")
        if n is not None:
            rows.append((
                f"native filter (dynamic module), {shape}", "`bench/bench_filter.py`",
                f"{n['qps']:,.0f} q/s, {n['envoy_cpu_us_per_query']:.2f} us Envoy CPU/query",
                f"tcp_proxy alone: {b['qps']:,.0f} q/s, {b['envoy_cpu_us_per_query']:.2f} us; "
                f"the module shipping no events: {s['qps_ratio_native_no_events_vs_tcp_proxy']:.2f}x q/s, "
                f"{s['added_envoy_cpu_us_per_query_native_no_events']:+.2f} us"
                + (f"; an empty dynamic module: {s['qps_ratio_empty_native_vs_tcp_proxy']:.2f}x q/s, "
                   f"{s['added_envoy_cpu_us_per_query_empty_native']:+.2f} us"
                   if "qps_ratio_empty_native_vs_tcp_proxy" in s else ""),
                f"{s['added_envoy_cpu_us_per_query_native']:+.2f} us/query; "
                f"{s['qps_ratio_native_vs_tcp_proxy']:.2f}x q/s (>= 0.95: {_met(s['qps_ratio_native_vs_tcp_proxy'] >= 0.95)})",
            ))  # fmt: skip
    return rows


UDP_FLOOR = "module, no events (floor)"


def udp_rows(d: dict[str, Any]) -> list[Row]:
    m, base = d["medians"], d["medians"]["udp_proxy"]
    baseline = f"udp_proxy alone: {base['qps']:,.0f} q/s, {base['envoy_cpu_us_per_query']:.2f} us"
    floor = d["summary"].get(UDP_FLOOR)
    if floor is not None:
        baseline += (f"; the module shipping no events (floor): {floor['qps_ratio_vs_udp_proxy']:.2f}x q/s, "
                     f"{floor['added_envoy_cpu_us_per_query']:+.2f} us")  # fmt: skip
    rows = []
    for name, s in d["summary"].items():
        if name == UDP_FLOOR:
            continue
        ratio, cpu = s["qps_ratio_vs_udp_proxy"], s["added_envoy_cpu_us_per_query"]
        rows.append((
            f"UDP module, {name.removeprefix('module, ')}, {d['sockets']} sockets x {d['inflight']} in flight",
            "`bench/bench_udp.py`",
            f"{m[name]['qps']:,.0f} q/s, {m[name]['envoy_cpu_us_per_query']:.2f} us Envoy CPU/query",
            baseline,
            f"{ratio:.2f}x q/s (>= 0.9: {_met(ratio >= 0.9)}); {cpu:+.2f} us/query (<= 3: {_met(cpu <= 3)})",
        ))  # fmt: skip
    return rows


def policy_rows(d: dict[str, Any]) -> list[Row]:
    s, m = d["summary"], d["medians"]
    large, empty = m["enforce, large policy"], m["enforce, empty policy"]
    return [(
        f"filter with {s['rules']:,} policy rules (100k operator rules + 1M category entries)", "`bench/bench_policy.py`",
        f"{large['envoy_cpu_us_per_query']:.2f} us Envoy CPU/query, {large['qps']:,.0f} q/s",
        f"empty policy: {empty['envoy_cpu_us_per_query']:.2f} us, {empty['qps']:,.0f} q/s",
        f"+{s['added_cpu_us_large_vs_empty_policy']:.2f} us/query (<= 1: {_met(s['added_cpu_us_large_vs_empty_policy'] <= 1)}); "
        f"snapshot {s['snapshot_bytes'] / 1e6:.1f} MB, new version applied in Envoy in {s['new_version_applied_s']:.2f} s",
    )]  # fmt: skip


def propagation_rows(d: dict[str, Any]) -> list[Row]:
    lp, poll = d["summary"]["long-poll"], d["summary"]["poll-1s"]
    return [(
        f"first malicious query to first query blocked in Envoy ({lp['runs']} runs, whole loop)", "`bench/bench_propagation.py`",
        f"long poll (default): p50 {lp['p50_ms']:.0f} ms, p99 {lp['p99_ms']:.0f} ms",
        f"1 s polling: p50 {poll['p50_ms']:.0f} ms, p99 {poll['p99_ms']:.0f} ms",
        f"p99 <= 1 s: {_met(lp['p99_ms'] <= 1000)}",
    )]  # fmt: skip


def collector_rows(d: dict[str, Any]) -> list[Row]:
    m = d["median_events_per_s"]
    return [(
        f"collector into Kafka ({d['events']:,} events, batches of {d['batch']})", "`bench/bench_collector.py`",
        f"{m['collector (HTTP -> Kafka)']:,.0f} events/s", f"bare aiokafka producer: {m['bare aiokafka producer']:,.0f} events/s",
        f"{d['ratio']:.2f}x (>= 0.7: {_met(d['ratio'] >= 0.7)})",
    )]  # fmt: skip


def dga_rows(d: dict[str, Any]) -> list[Row]:
    m = d["median_names_per_s"]
    return [(
        f"DGA scoring, batches of {d['batch']:,}, one core", "`bench/bench_dga.py`",
        f"{m['dnsguard']:,.0f} names/s; cached {m['cached']:,.0f}",
        f"scikit-learn on the same features: {m['sklearn']:,.0f} names/s",
        f"{m['dnsguard'] / m['sklearn']:.2f}x sklearn; >= 300,000 names/s: {_met(m['dnsguard'] >= 300_000)}",
    )]  # fmt: skip


def _worker_rate(m: dict[str, float]) -> str:
    """The worker's steady-state rate, and its rate through the whole topic when measured."""
    whole = m.get("dnsguard worker, whole topic")
    tail = f" (whole topic, its end included: {whole:,.0f})" if whole else ""
    return f"{m['dnsguard worker']:,.0f} events/s{tail}"


def _shape_row(what: str, shape: dict[str, Any]) -> Row:
    """A further record shape of the worker benchmark, against its decoding consumer."""
    m = shape["median_events_per_s"]
    return (
        what,
        "same",
        _worker_rate(m),
        f"consumer decoding the records: {m['decoding consumer']:,.0f} events/s",
        f"{shape['ratio_vs_decoding_consumer']:.2f}x the decoding consumer; "
        f">= 100,000/s: {_met(m['dnsguard worker'] >= 100_000)}",
    )


def worker_rows(d: dict[str, Any]) -> list[Row]:
    m = d["median_events_per_s"]
    w = m["dnsguard worker"]
    rows: list[Row] = [(
        f"worker, pre-filled topic ({d['events']:,} events in {d['records']:,} batch records) to verdicts",
        "`bench/bench_worker.py`",
        _worker_rate(m),
        f"bare aiokafka consumer: {m['bare aiokafka consumer']:,.0f} events/s; "
        f"consumer decoding the records: {m['decoding consumer']:,.0f} events/s",
        f"{d['ratio_vs_decoding_consumer']:.2f}x the decoding consumer (>= 0.5: "
        f"{_met(d['ratio_vs_decoding_consumer'] >= 0.5)}); >= 100,000/s: {_met(w >= 100_000)}",
    )]  # fmt: skip
    large = d.get("large_records")
    if large:
        lm = large["median_events_per_s"]
        lw = lm["dnsguard worker"]
        rows.append((
            f"the same, as filters send under load ({large['events']:,} events in "
            f"{large['records']:,} batch records of requests of {large['request_events']:,} events)",
            "same",
            _worker_rate(lm),
            f"bare aiokafka consumer: {lm['bare aiokafka consumer']:,.0f} events/s; "
            f"consumer decoding the records: {lm['decoding consumer']:,.0f} events/s",
            f"{large['ratio_vs_decoding_consumer']:.2f}x the decoding consumer (>= 0.5: "
            f"{_met(large['ratio_vs_decoding_consumer'] >= 0.5)}); >= 100,000/s: {_met(lw >= 100_000)}",
        ))  # fmt: skip
    many, sidecars = d.get("many_pods"), d.get("sidecars_bundled")
    if many:
        rows.append(_shape_row(
            f"the same number of events from {many['pods']} pods (a node's worth; "
            f"{many['records']:,} batch records of requests of {many['request_events']:,} events)",
            many,
        ))  # fmt: skip
    if sidecars:
        rows.append(_shape_row(
            f"the same pods each behind its own sidecar, their small requests bundled by the "
            f"collector ({sidecars['bundle_window_events']} events a 20 ms window at "
            f"{d['latency']['rate_events_per_s']:,} events/s; {sidecars['records']:,} records)",
            sidecars,
        ))  # fmt: skip
    lat = d["latency"]
    rows.append((
        f"worker, event to decision at {lat['rate_events_per_s']:,} events/s", "same",
        f"p50 <= {lat['p50_ms']:,.0f} ms, p99 <= {lat['p99_ms']:,.0f} ms", "-",
        f"p99 <= 100 ms: {_met(lat['p99_ms'] <= 100)}",
    ))  # fmt: skip
    return rows


def memory_rows(d: dict[str, Any]) -> list[Row]:
    b = d["bytes_per_client_median"]
    rows = [("detector state per client", "`bench/bench_detector_memory.py`", f"{b:,.0f} bytes", "-",
             f"<= 2 KiB: {_met(b <= 2048)}")]  # fmt: skip
    snap = d.get("snapshot_bytes")
    if snap:
        rows.append((
            "a client's changelog snapshot (whole pipeline, compact JSON)", "same",
            f"median {snap['median']:,.0f} bytes, p90 {snap['p90']:,}, max {snap['max']:,}", "-",
            f"median <= 1 KiB: {_met(snap['median'] <= 1024)}",
        ))  # fmt: skip
    return rows


def replay_rows(d: dict[str, Any]) -> list[Row]:
    med = d["median_events_per_s"]
    per = d["bytes_per_event"]
    rate = med["replay (v2)"]
    return [(
        f"dnsguard replay, {d['events']:,} events in v2 batch records", "`bench/bench_replay.py`",
        f"{rate:,.0f} events/s ({per['v2']:.0f} bytes/event; v1 lines: {med['replay (v1)']:,.0f} "
        f"events/s, {per['v1']:.0f} bytes/event)",
        f"decoding only: {med['decode only (v2)']:,.0f} events/s",
        f"{d['ratio_vs_decode_only']:.2f}x decoding; >= 100,000 events/s: {_met(rate >= 100_000)}",
    )]  # fmt: skip


SOURCES: list[tuple[str, Callable[[dict[str, Any]], list[Row]]]] = [
    ("filter.json", filter_rows), ("udp.json", udp_rows), ("policy.json", policy_rows), ("propagation.json", propagation_rows),
    ("collector.json", collector_rows), ("dga.json", dga_rows), ("worker.json", worker_rows),
    ("detector_memory.json", memory_rows), ("replay.json", replay_rows),
]  # fmt: skip


def table(results: Path = RESULTS) -> str:
    lines = [
        "| benchmark | command | dnsguard | baseline (same run) | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows in SOURCES:
        path = results / name
        if path.exists():
            lines += ["| " + " | ".join(r) + " |" for r in rows(json.loads(path.read_text()))]
    return "\n".join(lines) + "\n"


def spliced(readme: str, body: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{body}{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        README.write_text(spliced(README.read_text(), table()))
    else:
        sys.stdout.write(table())
