"""The ``dnsguard`` command. Each subcommand is a thin shell over a module."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from models.cli import register as register_models
from streams.cli.evaluate import register as register_evaluate
from streams.cli.policy import register as register_policy
from streams.errors import ConfigError, DnsguardError

Handler = Callable[[argparse.Namespace], int]


def _version(_: argparse.Namespace) -> int:
    try:
        print(f"dnsguard {version('dnsguard')}")
    except PackageNotFoundError:
        print("dnsguard (not installed as a distribution)")
    return 0


def _stack(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from streams.engine.topics import default_topics, ensure_topics
    from streams.settings import load_stack_settings
    from streams.stack.services import Stack

    settings = load_stack_settings()
    stack = Stack(settings)
    console = Console()
    if args.action == "install":
        from streams.stack.services import envoy_binary, install_kafka

        console.print(f"kafka jars: {install_kafka(settings)}")
        console.print(f"envoy: {envoy_binary()}")
        return 0
    if args.action == "down":
        stopped = stack.down()
        console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    if args.action == "up":
        stack.up()
        created = asyncio.run(ensure_topics(settings.kafka_bootstrap, default_topics()))
        if created:
            console.print(f"created topics: {', '.join(created)}")
    statuses = stack.status()
    table = Table(title=f"dnsguard local stack ({settings.state_dir})")
    for col in ("service", "pid", "state", "detail"):
        table.add_column(col)
    addresses = {
        "kafka": settings.kafka_bootstrap,
        "redis": settings.redis_url,
        "envoy": f"http://127.0.0.1:{settings.envoy_admin_port}/",
    }
    for st in statuses:
        state = (
            "[green]ready[/]"
            if st.ready
            else ("[yellow]starting[/]" if st.running else "[red]down[/]")
        )
        table.add_row(st.name, str(st.pid or "-"), state, f"{addresses[st.name]}  {st.detail}")
    console.print(table)
    return 0 if all(st.ready for st in statuses) else 1


def _demo(args: argparse.Namespace) -> int:
    from streams.settings import load_stack_settings
    from streams.stack.demo import run_live_demo

    return run_live_demo(load_stack_settings(), args.duration, args.keep, args.transport)


def _collector(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streams.ingest.collector import serve
    from streams.settings import load_collector_settings

    settings = load_collector_settings()
    if args.port is not None:
        settings = replace(settings, port=args.port)
    if args.sink is not None:
        settings = replace(settings, sink=args.sink).validate()
    print(
        f"dnsguard collector on http://{settings.host}:{settings.port}{settings.path} -> {settings.sink}"
    )
    asyncio.run(serve(settings))
    return 0


def _worker(_: argparse.Namespace) -> int:
    from streams.engine.worker import run_worker
    from streams.settings import load_worker_settings

    run_worker(load_worker_settings())
    return 0


def _feed(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streams.policy.feed import serve
    from streams.settings import load_feed_settings

    settings = load_feed_settings()
    if args.port is not None:
        settings = replace(settings, port=args.port)
    print(
        f"dnsguard feed on http://{settings.host}:{settings.port}{settings.path} "
        f"(signing key {settings.signing_key.id}, public {settings.signing_key.public_b64}) "
        f"<- {settings.redis_url}",
        flush=True,
    )
    asyncio.run(serve(settings))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.publish.blocklists import PublishOptions, publish_from_redis, watch
    from streams.settings import redis_from_env

    drop = frozenset(a for a in args.drop.split(",") if a)
    try:
        opts = PublishOptions(
            out_dir=Path(args.out),
            namespace=args.namespace,
            drop_actions=drop,
            sinkhole_a=args.sinkhole_a,
            sinkhole_aaaa=args.sinkhole_aaaa,
            zone=args.zone,
            all_namespaces=args.all_namespaces,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    async def run() -> None:
        client = redis_from_env()
        try:
            if args.watch:
                await watch(client, opts, args.interval)
            else:
                result = await publish_from_redis(client, opts)
                print(f"policy version {result.version}: {result.names} names")
                for f in result.files:
                    print(f"  {f}")
        finally:
            await client.aclose()

    asyncio.run(run())
    return 0


def _keys(args: argparse.Namespace) -> int:
    from streams.policy.signing import SigningError, SigningKey

    try:
        key, private = SigningKey.generate(args.id)
    except SigningError as exc:
        raise ConfigError(str(exc)) from None
    print("# the feed server's private key: keep it secret (DNSGUARD_FEED_SIGNING_KEY)")
    print(private)
    print("# the filters' public key (plugin configuration feed.keys)")
    print(f'{{"id": "{key.id}", "public_key": "{key.public_b64}"}}')
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from streams.sim.traffic import Stream, parse_target, run_streams

    host, port = parse_target(args.target)
    kinds = args.kind or ["browsing"]
    streams = [Stream(kind, host, port, args.rate, args.pool, args.transport) for kind in kinds]
    print(
        f"sending {', '.join(kinds)} at {args.rate} queries/s each to {host}:{port} "
        f"over {args.transport.upper()} for {args.duration}s"
    )
    asyncio.run(run_streams(streams, args.duration))
    for s in streams:
        print(f"{s.kind}: {s.sent} sent, answers {dict(s.rcodes)}, {s.errors} errors")
    return 0 if all(s.sent > s.errors for s in streams) else 1


def _resolver(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from streams.ingest.pcap import read_dns
    from streams.sim.resolver import Upstream, UpstreamServer, recorded_answers

    upstream = Upstream()
    if args.pcap:
        upstream.recorded = recorded_answers(p.wire for p in read_dns(Path(args.pcap)))
        print(f"replaying {len(upstream.recorded)} recorded answers from {args.pcap}")
    with UpstreamServer(upstream, args.port, args.doh_port, args.host):
        print(
            f"resolver on {args.host}:{args.port} (DNS over TCP) and :{args.doh_port} (DoH, cleartext)",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from detectors.identity import valid_namespace
    from detectors.pipeline import DetectorSettings, Pipeline
    from models import artifact
    from streams.engine.app import load_allowlist
    from streams.engine.replay import replay

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    model, _ = artifact.load()
    allow = load_allowlist(Path(args.allowlist), args.allowlist_top_n) if args.allowlist else []
    pipeline = Pipeline(model, DetectorSettings(), allow)
    out = Path(args.out)
    if args.namespace and not valid_namespace(args.namespace):
        raise ConfigError(f"--namespace {args.namespace!r}: not a Kubernetes namespace name")
    result = replay(pipeline, path, out, namespace=args.namespace or "")
    console = Console()
    table = Table(title=f"dnsguard replay of {path.name}")
    for col in ("time", "detector", "client", "name", "score", "verdict", "why"):
        table.add_column(col, overflow="fold")
    import datetime as _dt

    for d in result.decisions[: args.limit]:
        f = d.finding
        when = _dt.datetime.fromtimestamp(f.ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        verdict = f"{d.verdict.action} {d.verdict.scope}" if d.verdict else d.disposition
        table.add_row(
            when, f.detector, f.client, f.name or "-", f"{f.score:.3f}", verdict, f.summary
        )
    console.print(table)
    console.print(
        f"{result.events} events, {result.rejected} rejected, findings {dict(result.findings)} "
        f"({result.decisions_total} decisions); alerts and verdicts in {out}/"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnsguard",
        description="Inline DNS analytics and enforcement for Envoy service meshes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("version", help="print the dnsguard version")
    p.set_defaults(handler=_version)

    p = sub.add_parser("stack", help="start, check or stop the local Kafka/Redis/Envoy stack")
    p.add_argument("action", choices=["install", "up", "status", "down"])
    p.set_defaults(handler=_stack)

    p = sub.add_parser(
        "demo",
        help="the whole system for a minute: simulated pods through Envoy, detection, blocking",
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of simulated traffic")
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    p.add_argument(
        "--transport",
        choices=["udp", "tcp"],
        default=None,
        help="every pod over this (default: UDP, with the DGA bot and the legacy cron over TCP)",
    )
    p.set_defaults(handler=_demo)

    p = sub.add_parser("collector", help="HTTP ingest of filter event batches into Kafka")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--sink", default=None, help="kafka (default) or jsonl:PATH")
    p.set_defaults(handler=_collector)

    p = sub.add_parser(
        "replay", help="run the detectors on a JSONL of v1 events or a pcap, no Kafka/Redis"
    )
    p.add_argument("file")
    p.add_argument(
        "--out",
        default="dnsguard-replay",
        help="folder for alerts.jsonl, verdicts.jsonl, rejected.jsonl",
    )
    p.add_argument(
        "--allowlist", default=None, help="CSV with a domain column (e.g. a top-sites ranking)"
    )
    p.add_argument("--allowlist-top-n", type=int, default=10_000)
    p.add_argument("--limit", type=int, default=50, help="rows shown in the table")
    p.add_argument(
        "--namespace",
        default=None,
        help="a capture's namespace (pcaps carry no pod identity; verdicts need a scope)",
    )
    p.set_defaults(handler=_replay)

    p = sub.add_parser("worker", help="Faust worker: events from Kafka to alerts and verdicts")
    p.set_defaults(handler=_worker)

    p = sub.add_parser("simulate", help="send simulated workloads' DNS queries to a target")
    p.add_argument("--target", required=True, help="HOST:PORT, e.g. an Envoy DNS listener")
    p.add_argument("--kind", action="append", choices=["browsing", "dga", "tunnel", "nxstorm"],
                   help="workload kind (repeatable; default browsing)")  # fmt: skip
    p.add_argument("--rate", type=float, default=20.0, help="queries per second per kind")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--pool", type=int, default=0, help="keep asking the first N names (0: always new)"
    )
    p.add_argument("--transport", choices=["udp", "tcp"], default="udp", help="default: udp")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser(
        "resolver", help="a test resolver; with --pcap it answers with a capture's responses"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=15353)
    p.add_argument("--doh-port", type=int, default=15354)
    p.add_argument("--pcap", default=None)
    p.set_defaults(handler=_resolver)

    p = sub.add_parser(
        "feed", help="serve the Redis policy to the filters as signed snapshots/deltas"
    )
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(handler=_feed)

    p = sub.add_parser("keys", help="make an Ed25519 key pair for signing the policy feed")
    p.add_argument("action", choices=["new"])
    p.add_argument("--id", default="k1", help="key id (1 to 64 of A-Z a-z 0-9 _ -)")
    p.set_defaults(handler=_keys)

    p = sub.add_parser(
        "publish", help="write the policy as an RPZ zone, a domain list and STIX 2.1"
    )
    p.add_argument("--out", default="dnsguard-blocklist", help="output folder")
    p.add_argument("--namespace", default=None, help="also publish this namespace's verdicts")
    p.add_argument(
        "--all-namespaces",
        action="store_true",
        help="also one set of files per namespace under DIR/namespaces/<namespace>/",
    )
    p.add_argument(
        "--drop", default="refused", help="actions published as rpz-drop. (comma-separated)"
    )
    p.add_argument("--sinkhole-a", default=None)
    p.add_argument("--sinkhole-aaaa", default=None)
    p.add_argument("--zone", default="rpz.dnsguard.", help="RPZ zone origin")
    p.add_argument("--watch", action="store_true", help="republish whenever the policy changes")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between version checks")
    p.set_defaults(handler=_publish)

    evaluations = register_models(sub)  # train, eval dga, score: beside the model code
    register_evaluate(evaluations)  # eval cluster
    register_policy(sub)  # policy apply/diff/explain, report
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except DnsguardError as exc:
        print(f"dnsguard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
