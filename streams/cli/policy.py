"""``dnsguard policy apply|diff|explain`` and ``dnsguard report``."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from detectors.events import EventError
from detectors.operator_policy import (
    CompiledPolicy,
    Entry,
    OperatorPolicy,
    compile_policy,
    verdict_entry,
)
from streams.errors import ConfigError
from streams.policy.file import load_policy
from streams.settings import TOPICS


def _client() -> Any:
    from streams.settings import redis_from_env

    return redis_from_env(socket_connect_timeout=2, socket_timeout=5)


def operator_hash_key(e: Entry) -> str:
    return f"{e.scope.key}|{e.name or '.'}|{e.match}|{e.action}"


def stored_entries(policy: OperatorPolicy) -> dict[str, dict[str, Any]]:
    return {operator_hash_key(e): e.as_dict() for e in compile_policy(policy)}


def _summary(policy: OperatorPolicy, entries: Mapping[str, Any]) -> str:
    cats = ", ".join(
        f"{c.name} {len(c.domains):,} domains"
        + (f" ({c.skipped:,} lines skipped)" if c.skipped else "")
        for c in policy.categories.values()
    )
    return (
        f"{len(policy.rules)} rules, {len(policy.modes)} scope modes"
        + (f", categories: {cats}" if cats else "")
        + f" -> {len(entries):,} compiled entries"
    )


def _apply(args: argparse.Namespace) -> int:
    from streams.policy import store as verdict_store

    path = Path(args.file)
    policy = load_policy(path)
    entries = stored_entries(policy)
    print(_summary(policy, entries))
    meta = {
        "file": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "applied_at": str(int(time.time())),
    }

    async def run() -> tuple[int, int]:
        client = _client()
        try:
            return await verdict_store.write_operator(client, entries, meta)
        finally:
            await client.aclose()

    changed, version = asyncio.run(run())
    print(
        f"{changed:,} entries changed; policy version {version}"
        if changed
        else f"no change; policy version {version}"
    )
    return 0


def _diff(args: argparse.Namespace) -> int:
    from streams.policy import store as verdict_store

    policy = load_policy(Path(args.file))
    entries = stored_entries(policy)

    async def run() -> Any:
        client = _client()
        try:
            return await verdict_store.diff_operator(client, entries)
        finally:
            await client.aclose()

    added, changed, removed = asyncio.run(run())
    print(_summary(policy, entries))
    for label, items in (("+", sorted(added)), ("~", sorted(changed)), ("-", removed)):
        for key in items[: args.limit]:
            e = (added.get(key) or changed.get(key) or {}) if label != "-" else {}
            extra = f"  {e.get('action')}  {e.get('source', '')}" if e else ""
            print(f"{label} {key}{extra}")
        if len(items) > args.limit:
            print(f"{label} ... and {len(items) - args.limit:,} more")
    print(f"{len(added):,} to add, {len(changed):,} to change, {len(removed):,} to remove")
    return 1 if (added or changed or removed) and args.exit_code else 0


async def _load_merged(file: str | None) -> tuple[int | None, list[Entry]]:
    """The applied policy's version and entries (detector verdicts merged in),
    or with ``file`` that file's rules plus the verdicts in Redis. Without
    Redis, a file's rules alone: the version is then None (verdicts not
    consulted). Without ``file``, Redis is required."""
    from streams.policy import store as verdict_store

    own = compile_policy(load_policy(Path(file))) if file is not None else None
    client = _client()
    try:
        version, verdicts, operator = await verdict_store.full_snapshot(client)
    except verdict_store.StoreUnavailable as exc:
        if own is None:
            raise ConfigError(f"Redis unavailable: {exc}") from exc
        return None, own
    finally:
        await client.aclose()
    entries = [verdict_entry(v) for v in verdicts.values()]
    if own is not None:
        entries += own
    else:
        entries += [Entry.from_dict(v) for v in operator.values()]
    return version, entries


def _explain(args: argparse.Namespace) -> int:
    from detectors.dnsname import InvalidName, canonical_name

    try:
        name = canonical_name(args.name)
    except InvalidName as exc:
        raise ConfigError(str(exc)) from None
    version, entries = asyncio.run(_load_merged(args.file))
    d = CompiledPolicy(entries).decide(name, args.namespace, args.workload or "", time.time())
    who = f"namespace {args.namespace}" + (f", workload {args.workload}" if args.workload else "")
    if args.file and version is None:
        source = f"file {args.file} only: Redis unavailable, detector verdicts were not consulted"
    elif args.file:
        source = f"file {args.file} + detector verdicts of policy version {version}"
    else:
        source = f"policy version {version}"
    print(f"{name or '.'} from {who} ({source}):")
    print(f"  {d.explain()}")
    return 0


# -- report ---------------------------------------------------------------------------


def _v1_events(raw: str | bytes) -> list[dict[str, Any]]:
    """The events of a JSONL line or a Kafka record as v1 objects: a v2 batch,
    one v1 event, or a JSON array of them; nothing for what is neither."""
    from streams.ingest.batch import decode_batch_v2, to_v1

    try:
        doc = json.loads(raw)
    except (ValueError, TypeError):
        return []
    if isinstance(doc, dict) and doc.get("v") == 2:
        try:
            return to_v1(decode_batch_v2(raw.encode() if isinstance(raw, str) else raw))
        except EventError:
            return []
    items = doc if isinstance(doc, list) else [doc]
    return [e for e in items if isinstance(e, dict)]


def _events_from_file(path: Path) -> Iterable[dict[str, Any]]:
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield from _v1_events(line)


def _events_from_kafka(bootstrap: str, topic: str, limit: int) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            while len(out) < limit:
                batch = await consumer.getmany(timeout_ms=1500, max_records=5000)
                if not batch:
                    break
                for records in batch.values():
                    for r in records:
                        out.extend(_v1_events(r.value))
            return out[:limit]
        finally:
            await consumer.stop()

    return asyncio.run(run())


def build_report(
    events: Iterable[Mapping[str, Any]], policy: CompiledPolicy | None, top: int
) -> dict[str, Any]:
    """Per namespace: top registrable domains, blocked counts by deciding rule,
    and shadow-IT usage (events the policy marked with ``log``/``shadow``)."""
    from detectors.names import split_name

    domains: dict[str, Counter[str]] = defaultdict(Counter)
    blocked: dict[str, Counter[str]] = defaultdict(Counter)
    shadow: dict[str, Counter[str]] = defaultdict(Counter)
    total: Counter[str] = Counter()
    for ev in events:
        try:
            ns = ev["node"]["namespace"] or "-"
            name = ev["query"]["name"]
            action = ev.get("action", "allowed")
        except (KeyError, TypeError):
            continue
        total[ns] += 1
        domains[ns][split_name(name).registrable or name] += 1
        if action in ("blocked", "shadow"):
            why = "unknown (policy not available)"
            if policy is not None:
                d = policy.decide(name, ns, ev["node"].get("workload", ""), time.time())
                why = d.entry.source if d.entry is not None else "no longer in the policy"
            (blocked if action == "blocked" else shadow)[ns][
                why if action == "blocked" else split_name(name).registrable or name
            ] += 1
    return {
        ns: {
            "events": total[ns],
            "top_domains": domains[ns].most_common(top),
            "blocked_by_rule": blocked[ns].most_common(),
            "shadow_it": shadow[ns].most_common(top),
        }
        for ns in sorted(total)
    }


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.events:
        events: Iterable[dict[str, Any]] = _events_from_file(Path(args.events))
    else:
        from streams.settings import load_stack_settings

        bootstrap = (
            os.environ.get("DNSGUARD_KAFKA_BOOTSTRAP") or load_stack_settings().kafka_bootstrap
        )
        events = _events_from_kafka(bootstrap, args.topic, args.max_events)
    policy = None
    if not args.no_policy:
        try:
            _, entries = asyncio.run(_load_merged(args.policy))
            policy = CompiledPolicy(entries)
        except (OSError, ConfigError) as exc:
            print(f"(blocked counts without rule attribution: {exc})")
    report = build_report(events, policy, args.top)
    console = Console()
    for ns, r in report.items():
        t = Table(title=f"namespace {ns}: {r['events']:,} queries")
        t.add_column("top domains")
        t.add_column("queries", justify="right")
        t.add_column("blocked by", overflow="fold")
        t.add_column("blocked", justify="right")
        t.add_column("shadow IT")
        t.add_column("queries", justify="right")
        rows = max(len(r["top_domains"]), len(r["blocked_by_rule"]), len(r["shadow_it"]))
        for i in range(rows):
            cells: list[str] = []
            for col in ("top_domains", "blocked_by_rule", "shadow_it"):
                item = r[col][i] if i < len(r[col]) else ("", "")
                cells += [str(item[0]), f"{item[1]:,}" if item[1] != "" else ""]
            t.add_row(*cells)
        console.print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.csv:
        import csv

        with Path(args.csv).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["namespace", "kind", "key", "count"])
            for ns, r in report.items():
                for kind in ("top_domains", "blocked_by_rule", "shadow_it"):
                    for key, n in r[kind]:
                        w.writerow([ns, kind, key, n])
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "policy", help="operator policy: apply a YAML file, diff it, explain a decision"
    )
    ps = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    a = ps.add_parser("apply", help="load FILE into Redis as a new policy version")
    a.add_argument("file")
    a.set_defaults(handler=_apply)
    d = ps.add_parser("diff", help="what applying FILE would change")
    d.add_argument("file")
    d.add_argument("--limit", type=int, default=20, help="entries shown per kind")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
    d.set_defaults(handler=_diff)
    e = ps.add_parser("explain", help="which rule or verdict decides NAME, and why")
    e.add_argument("name")
    e.add_argument("--namespace", required=True)
    e.add_argument("--workload", default=None)
    e.add_argument("--file", default=None, help="use this policy file instead of the applied one")
    e.set_defaults(handler=_explain)

    r = sub.add_parser("report", help="per-namespace top domains, blocks by rule, shadow-IT usage")
    src = r.add_mutually_exclusive_group()
    src.add_argument(
        "--events", default=None, help="a JSONL file of v1 events (else the Kafka topic)"
    )
    src.add_argument("--topic", default=TOPICS.events)
    r.add_argument("--max-events", type=int, default=1_000_000)
    r.add_argument(
        "--policy", default=None, help="policy file for rule attribution (default: the applied one)"
    )
    r.add_argument("--no-policy", action="store_true", help="do not read Redis for attribution")
    r.add_argument("--top", type=int, default=10)
    r.add_argument("--json", default=None)
    r.add_argument("--csv", default=None)
    r.set_defaults(handler=_report)
