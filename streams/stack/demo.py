"""``dnsguard demo``: the whole system, for real, for about a minute.

Starts Kafka and Redis (the local stack), the collector, a worker, the feed
server, the blocklist publisher (``--watch``), a DNS resolver, and one Envoy
sidecar with the dnsguard filter per simulated pod (its node metadata says
which namespace and pod it serves). Then each pod sends real DNS queries
through its Envoy: benign browsing in ``shop`` and ``payments``, a
DGA-infected batch job in ``payments``, a DNS exfiltration in ``analytics``,
an NXDOMAIN storm in ``legacy``. A live view shows queries, events, alerts,
blocks and the feed version; the summary says where the outputs are.
Everything started here is stopped at the end (the stack too, unless it was
already running or ``--keep`` is given).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.policy.signing import SigningKey
from streams.settings import TOPICS, StackSettings
from streams.sim.resolver import Upstream, UpstreamServer
from streams.sim.traffic import Stream, run_stream
from streams.sim.workloads import DEFAULT_DATA, DEFAULT_WORKLOADS, DGA_BURST, Simulator, Workload
from streams.stack.envoy import NATIVE_DIR, FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import Child, free_ports, http_text, metric_sum, wait_http
from streams.stack.services import Kafka, Redis, Stack, envoy_binary

TOKEN_BYTES = 16


@dataclass
class Pod:
    workload: Workload
    admin: int
    dns_port: int
    stream: Stream
    envoy: Child | None = None

    def stats(self) -> dict[str, int]:
        """The pod's dnsguard stats: the Wasm filter's (TCP) plus the UDP module's."""
        text = http_text(f"http://127.0.0.1:{self.admin}/stats?filter=custom.dnsguard")
        out: Counter[str] = Counter()
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            for prefix in ("wasmcustom.dnsguard.", "dynamicmodulescustom.dnsguard."):
                if key.startswith(prefix) and value.isdigit():
                    name = key.removeprefix(prefix)
                    if name == "feed_version":
                        out[name] = max(out[name], int(value))
                    else:
                        out[name] += int(value)
        return dict(out)


@dataclass
class Demo:
    settings: StackSettings
    duration_s: float
    out: Path
    transport: str | None = None  # every pod over "udp" or "tcp"; None: each workload's own
    children: list[Child] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    alerts: Counter[str] = field(default_factory=Counter)
    alert_names: dict[str, str] = field(default_factory=dict)
    alerts_by_pod: Counter[str] = field(default_factory=Counter)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(args, self.out / f"{name}.log", {**os.environ, **env})
        self.children.append(child)
        return child

    def start(self, console: Any) -> None:
        s = self.settings
        self.out.mkdir(parents=True, exist_ok=True)
        self.ports = {
            "collector": free_ports(1)[0],
            "feed": free_ports(1)[0],
            "worker": free_ports(1)[0],
            "resolver": free_ports(1)[0],
        }
        # a fresh signing key and token per run, never stored
        signing_key, signing_text = SigningKey.generate("demo")
        self.feed_key = (signing_key.id, signing_key.public_b64)
        token = secrets.token_hex(TOKEN_BYTES)
        common = {"DNSGUARD_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "DNSGUARD_REDIS_URL": s.redis_url}
        py = [sys.executable, "-m", "streams.cli"]
        console.print("starting the collector, the feed server, a worker and the publisher ...")
        self.spawn("collector", [*py, "collector"], {**common, "DNSGUARD_COLLECTOR_PORT": str(self.ports["collector"]),
                                                      "DNSGUARD_COLLECTOR_TOKEN": token})  # fmt: skip
        self.spawn("feed", [*py, "feed"], {**common, "DNSGUARD_FEED_PORT": str(self.ports["feed"]),
                                            "DNSGUARD_FEED_SIGNING_KEY": signing_text,
                                            "DNSGUARD_FEED_TOKEN": token})  # fmt: skip
        self.spawn("worker", [*py, "worker"], {**common, "DNSGUARD_WORKER_WEB_PORT": str(self.ports["worker"]),
                                                "DNSGUARD_WORKER_DATA_DIR": str(self.out / "worker"),
                                                "DNSGUARD_ALLOWLIST_FILE": str(DEFAULT_DATA / "benign_top.csv")})  # fmt: skip
        self.spawn(
            "publisher",
            [*py, "publish", "--watch", "--all-namespaces", "--out", str(self.out / "blocklist")],
            common,
        )
        sim = Simulator()
        # the resolver: real-looking answers; DGA names (but each burst's C2) and
        # storm names do not exist
        self.upstream = Upstream(nxdomain=set(sim.dga) - sim.c2, nxdomain_prefixes=("nx-", "svc-"))
        self.resolver = UpstreamServer(self.upstream, self.ports["resolver"], free_ports(1)[0])
        self.resolver.__enter__()
        wait_http(f"http://127.0.0.1:{self.ports['collector']}/healthz", timeout=60)
        wait_http(f"http://127.0.0.1:{self.ports['feed']}/healthz", timeout=60)
        console.print(
            f"starting {len(DEFAULT_WORKLOADS)} Envoy sidecars with the dnsguard filter ..."
        )
        for w in DEFAULT_WORKLOADS:
            # the bot's list of the day is one burst, retried after each pause: once
            # its C2 is blocked, the retries are answered by the filter
            pool = DGA_BURST if w.kind == "dga" else 0
            transport = self.transport or w.transport
            admin, dns_port = free_ports(2)
            stream = Stream(w.kind, "127.0.0.1", dns_port, w.qps, pool, transport)
            pod = Pod(w, admin, dns_port, stream)
            # a sidecar takes both: UDP through the module, TCP through the Wasm filter
            ports = FilterPorts(admin=pod.admin, dns_tcp=pod.dns_port, dns_udp=pod.dns_port,
                                upstream_dns=self.ports["resolver"],
                                collector=self.ports["collector"], feed=self.ports["feed"])  # fmt: skip
            workload = w.pod.rsplit("-", 1)[0]
            opts = FilterOptions(token=token, feed_keys=(self.feed_key,), feed_token=token, concurrency=1,
                                 metadata={"NAMESPACE": w.namespace, "WORKLOAD_NAME": workload, "NAME": w.pod,
                                           "SERVICE_ACCOUNT": workload},
                                 node_id=f"sidecar~{w.ip}~{w.pod}.{w.namespace}~{w.namespace}.svc.cluster.local")  # fmt: skip
            cfg_path = self.out / f"envoy-{w.pod}.yaml"
            cfg_path.write_text(yaml.safe_dump(filter_bootstrap(ports, opts)))
            pod.envoy = self.spawn(f"envoy-{w.pod}", [str(envoy_binary()), "-c", str(cfg_path), "--use-dynamic-base-id",
                                                       "--concurrency", "1", "-l", "warn"],
                                   {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)})  # fmt: skip
            self.pods.append(pod)
        for pod in self.pods:
            wait_http(f"http://127.0.0.1:{pod.admin}/ready", expect=b"LIVE", timeout=60)

    async def _consume_alerts(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(TOPICS.alerts, bootstrap_servers=self.settings.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="latest")  # fmt: skip
        await consumer.start()
        try:
            with (self.out / "alerts.jsonl").open("a") as fh:
                while not stop.is_set():
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for r in records:
                            fh.write(r.value.decode() + "\n")
                            alert = json.loads(r.value)
                            u = alert.get("unmapped", {}).get("dnsguard", {})
                            self.alerts[u.get("detector", "?")] += 1
                            pod = (alert.get("src_endpoint") or {}).get("hostname") or "?"
                            self.alerts_by_pod[pod] += 1
                            name = (alert.get("query") or {}).get("hostname")
                            if name:
                                self.alert_names[name] = u.get("detector", "?")
                    fh.flush()
        finally:
            await consumer.stop()

    def _traffic(self, done: threading.Event) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            alerts = asyncio.create_task(self._consume_alerts(stop))
            await asyncio.sleep(1.0)  # the alert consumer is assigned before anything can alert
            sim = Simulator()
            await asyncio.gather(*(run_stream(p.stream, sim, self.duration_s) for p in self.pods))
            await asyncio.sleep(2.0)  # the last alerts arrive
            stop.set()
            await alerts

        try:
            asyncio.run(main())
        finally:
            done.set()

    def view(self) -> Any:
        from rich.table import Table

        stats = {p.workload.pod: p.stats() for p in self.pods}
        worker = http_text(f"http://127.0.0.1:{self.ports['worker']}/metrics")
        t = Table(title=f"dnsguard demo: {self.elapsed():.0f}s of {self.duration_s:.0f}s")
        for col in (
            "namespace/pod",
            "traffic",
            "queries",
            "answered",
            "blocked",
            "events sent",
            "feed version",
        ):
            t.add_column(
                col, justify="right" if col not in ("namespace/pod", "traffic") else "left"
            )
        for p in self.pods:
            st = stats[p.workload.pod]
            t.add_row(f"{p.workload.namespace}/{p.workload.pod}", f"{p.workload.kind}/{p.stream.transport}",
                      f"{p.stream.sent:,}",
                      f"{sum(p.stream.rcodes.values()):,}", f"{st.get('blocked', 0):,}",
                      f"{st.get('events_sent', 0):,}", str(st.get("feed_version", 0)))  # fmt: skip
        events = metric_sum(worker, "dnsguard_worker_events_total")
        rate = events / max(self.elapsed(), 1e-9)
        t.caption = (f"worker: {events:,.0f} events ({rate:,.0f}/s); alerts: "
                     + (", ".join(f"{k} {v}" for k, v in sorted(self.alerts.items())) or "none yet"))  # fmt: skip
        return t

    def elapsed(self) -> float:
        return min(time.monotonic() - self.t0, self.duration_s)

    def run(self, console: Any) -> None:
        from rich.live import Live

        done = threading.Event()
        self.t0 = time.monotonic()
        thread = threading.Thread(target=self._traffic, args=(done,), daemon=True)
        thread.start()
        with Live(self.view(), console=console, refresh_per_second=2, transient=False) as live:
            while not done.wait(1.0):
                live.update(self.view())
            live.update(self.view())
        thread.join()

    def summary(self, console: Any) -> dict[str, Any]:
        stats = {p.workload.pod: p.stats() for p in self.pods}
        blocked = {pod: st.get("blocked", 0) for pod, st in stats.items()}
        # the global zone, and one per namespace (verdicts from one pod stay in its namespace)
        zone_names = [
            ln.split()[0]
            for rpz in (self.out / "blocklist").glob("**/dnsguard.rpz")
            for ln in rpz.read_text().splitlines()[5:]
            if ln and not ln.startswith("*")
        ]
        result = {
            "queries": sum(p.stream.sent for p in self.pods),
            "blocked": sum(blocked.values()),
            "blocked_by_pod": blocked,
            "transport_by_pod": {p.workload.pod: p.stream.transport for p in self.pods},
            "answered_by_pod": {p.workload.pod: sum(p.stream.rcodes.values()) for p in self.pods},
            "alerts": dict(self.alerts),
            "alerts_by_pod": {
                p.workload.pod: self.alerts_by_pod[p.workload.pod] for p in self.pods
            },
            "rpz_names": len(zone_names),
            "feed_version": max((st.get("feed_version", 0) for st in stats.values()), default=0),
        }
        console.print(f"\n[bold]{result['queries']:,} queries[/] from {len(self.pods)} pods; "
                      f"alerts by detector: {dict(self.alerts) or 'none'}; "
                      f"{result['blocked']:,} queries answered by the filter "
                      f"({', '.join(f'{k} {v}' for k, v in blocked.items() if v) or 'none'}); "
                      f"policy version {result['feed_version']}, {len(zone_names)} names in the RPZ zones")  # fmt: skip
        console.print("\n[bold]outputs[/]")
        console.print(
            f"  alerts (OCSF 4003, JSONL):  {self.out / 'alerts.jsonl'}  (also Kafka dnsguard.alerts)"
        )
        console.print(
            f"  blocklists:                 {self.out / 'blocklist'}/ (dnsguard.rpz, dnsguard-domains.txt, dnsguard.stix.json)"
        )
        console.print(f"  metrics (while running):    collector :{self.ports['collector']}/metrics, worker :{self.ports['worker']}/metrics, "
                      f"feed :{self.ports['feed']}/metrics, Envoy :<admin>/stats/prometheus")  # fmt: skip
        console.print(f"  logs:                       {self.out}/*.log")
        (self.out / "summary.json").write_text(json.dumps(result, indent=1))
        return result

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        if hasattr(self, "resolver"):
            self.resolver.__exit__(None, None, None)


def run_live_demo(
    settings: StackSettings, duration_s: float, keep: bool, transport: str | None = None
) -> int:
    from rich.console import Console

    from streams.engine.topics import default_topics, ensure_topics

    console = Console()
    stack = Stack(settings, (Redis, Kafka))
    running_before = {s.name for s in stack.status() if s.running}
    console.print("[bold]dnsguard demo[/]: starting Kafka and Redis ...")
    stack.up()
    out = settings.state_dir / "demo" / time.strftime("%Y%m%d-%H%M%S")
    demo = Demo(settings, duration_s, out, transport=transport)
    try:
        asyncio.run(ensure_topics(settings.kafka_bootstrap, default_topics()))
        demo.start(console)
        demo.run(console)
        time.sleep(1.5)  # the publisher's last rewrite
        demo.summary(console)
    finally:
        demo.stop()
        if not keep:
            for svc in reversed([s for s in stack if s.name not in running_before]):
                svc.stop()
    return 0
