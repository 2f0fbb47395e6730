"""Worker reliability on real Kafka and Redis: kill -9 and restart; Redis away for a while."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from detectors.events import from_v1
from detectors.pipeline import Pipeline
from models import artifact
from streams.engine.topics import TopicSpec, ensure_topics
from streams.policy.store import read_verdicts
from streams.settings import load_stack_settings
from streams.sim.workloads import Simulator
from streams.stack.processes import free_ports
from streams.stack.services import Redis as RedisService
from streams.stack.services import Stack
from tests.integration.test_worker import _produce, _read

pytestmark = pytest.mark.integration


class Rig:
    def __init__(
        self, bootstrap: str, redis_url: str, tmp: Path, seconds: float = 60, partitions: int = 6
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.tmp = tmp
        self.topics = {n: f"r{tag}.{n}" for n in ("events", "alerts", "verdicts", "dlq")}
        asyncio.run(
            ensure_topics(
                bootstrap,
                [TopicSpec(self.topics["events"], partitions), TopicSpec(self.topics["alerts"], 1),
                 TopicSpec(self.topics["dlq"], 1), TopicSpec(self.topics["verdicts"], 1, {"cleanup.policy": "compact"})],
            )
        )  # fmt: skip
        self.sim = Simulator()
        self.events = list(self.sim.events(time.time() - seconds, seconds))
        values = [
            (f"{e['node']['namespace']}/{e['node']['pod']}".encode(), json.dumps(e).encode())
            for e in self.events
        ]
        values.insert(7, (b"bad", b"{not json"))
        self.values = values
        self.env = dict(
            os.environ,
            DNSGUARD_KAFKA_BOOTSTRAP=bootstrap,
            DNSGUARD_REDIS_URL=redis_url,
            DNSGUARD_WORKER_APP_ID=f"r{tag}",
            DNSGUARD_EVENTS_TOPIC=self.topics["events"],
            DNSGUARD_ALERTS_TOPIC=self.topics["alerts"],
            DNSGUARD_VERDICTS_TOPIC=self.topics["verdicts"],
            DNSGUARD_DLQ_TOPIC=self.topics["dlq"],
            DNSGUARD_WORKER_WEB_PORT=str(free_ports(1)[0]),
            DNSGUARD_WORKER_DATA_DIR=str(tmp / "worker"),
            DNSGUARD_WORKER_BATCH_MAX="200",
            # a killed worker's partitions move after this, not after the 30 s default
            DNSGUARD_WORKER_SESSION_TIMEOUT_S="10",
        )
        self.log = tmp / "worker.log"

    def produce(self, values: list[tuple[bytes, bytes]]) -> None:
        asyncio.run(_produce(self.bootstrap, self.topics["events"], values))

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as fh:
            return subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def verdict_keys(self, detector: str = "infected_client") -> set[str]:
        async def run() -> set[str]:
            client = Redis.from_url(self.redis_url, socket_timeout=2)
            try:
                return {
                    k for k, v in (await read_verdicts(client)).items() if v["detector"] == detector
                }
            except OSError:
                return set()
            finally:
                await client.aclose()

        return asyncio.run(run())

    def expected_dga_keys(self) -> set[str]:
        """What an uninterrupted, in-process run of the same events decides (C2 verdicts)."""
        pipeline = Pipeline(artifact.load()[0])
        events = sorted((from_v1(e) for e in self.events), key=lambda e: e.ts)
        decisions = pipeline.process(events).decisions
        return {
            d.verdict.key
            for d in decisions
            if d.verdict is not None and d.finding.detector == "infected_client"
        }

    def wait_for(self, predicate, timeout: float = 150) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(1)
        raise AssertionError(f"timed out; worker log:\n{self.log_excerpt()}")

    def log_excerpt(self) -> str:
        """The log's rebalance and recovery lines (at info level) and its tail."""
        lines = self.log.read_text(errors="replace").splitlines()
        marks = (
            "Recovery",
            "recovery",
            "assigned",
            "revoked",
            "Rebalanc",
            "highwater",
            "Highwater",
        )
        recovery = [line for line in lines if any(m in line for m in marks)]
        return "\n".join([*recovery[-60:], "-- tail --", *lines[-40:]])[-12000:]


def _metric(port: int, name: str) -> float:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:  # not serving yet
        pass
    return 0.0


def _events_processed(port: int) -> float:
    return _metric(port, "dnsguard_worker_events_total")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_kill_9_mid_stream_then_restart_loses_nothing_and_duplicates_no_alert(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rig = Rig(kafka_bootstrap, redis_url.rsplit("/", 1)[0] + "/4", tmp_path)
    expected = rig.expected_dga_keys()
    assert expected
    half = len(rig.values) // 2
    rig.produce(rig.values[:half])
    proc = rig.start()
    try:
        rig.wait_for(lambda: len(rig.verdict_keys()) > 0)
        proc.send_signal(signal.SIGKILL)  # no clean shutdown, no final commit
        proc.wait()
        rig.produce(rig.values[half:])
        proc = rig.start()
        rig.wait_for(lambda: expected <= rig.verdict_keys())
        time.sleep(3)
        # the restarted worker took up its clients' detector state from the changelog
        restored = _metric(
            int(rig.env["DNSGUARD_WORKER_WEB_PORT"]), "dnsguard_worker_client_states_restored_total"
        )
    finally:
        stop(proc)
    assert restored > 0
    assert rig.verdict_keys() == expected
    dead = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, rig.topics["dlq"]))]
    assert {(d["partition"], d["offset"]) for d in dead}
    assert all(d["topic"] == rig.topics["events"] for d in dead)
    alerts = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, rig.topics["alerts"]))]
    ids = [a["metadata"]["uid"] for a in alerts]
    assert len(ids) == len(set(ids)), "a replayed batch published an alert twice"


def test_redis_away_for_a_while_then_back_nothing_lost(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    redis_stack = Stack(
        replace(load_stack_settings({}), state_dir=tmp_path / "redis", redis_port=port),
        (RedisService,),
    )
    redis_stack.up()
    rig = Rig(kafka_bootstrap, f"redis://127.0.0.1:{port}/0", tmp_path)
    expected = rig.expected_dga_keys()
    proc = rig.start()
    web = int(rig.env["DNSGUARD_WORKER_WEB_PORT"])
    try:
        rig.produce(rig.values[:50])
        rig.wait_for(lambda: _events_processed(web) > 0)  # joined and working
        redis_stack.down()
        rig.produce(rig.values[50:])  # events arrive while Redis is down
        time.sleep(10)
        assert proc.poll() is None, "the worker died while Redis was down"
        redis_stack.up()
        rig.wait_for(lambda: expected <= rig.verdict_keys(), timeout=60)
    finally:
        stop(proc)
        redis_stack.down()
    assert "Redis unavailable" in rig.log.read_text()


def _namespace(value: tuple[bytes, bytes]) -> str:
    return json.loads(value[1])["node"]["namespace"]


def _client_events(web: int, client: str) -> int:
    """The client's events over the last hour, as the worker at ``web`` reports them."""
    url = f"http://127.0.0.1:{web}/clients/counts?client={urllib.parse.quote(client)}&minutes=60"
    with urllib.request.urlopen(url, timeout=10) as r:
        return sum(m["events"] for m in json.load(r)["minutes"])


def test_two_workers_in_one_group_share_partitions_and_agree_with_one(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rig = Rig(kafka_bootstrap, redis_url.rsplit("/", 1)[0] + "/5", tmp_path)
    expected = rig.expected_dga_keys()
    # many clients, so that every partition carries events
    extra = []
    for i in range(120):
        e = json.loads(rig.values[0][1] if rig.values[0][0] != b"bad" else rig.values[1][1])
        e["node"]["pod"] = f"extra-{i}"
        extra.append((f"{e['node']['namespace']}/extra-{i}".encode(), json.dumps(e).encode()))
    web = [rig.env["DNSGUARD_WORKER_WEB_PORT"]]
    first = rig.start()
    web.append(str(free_ports(1)[0]))
    rig.env = dict(
        rig.env, DNSGUARD_WORKER_WEB_PORT=web[1], DNSGUARD_WORKER_DATA_DIR=str(tmp_path / "w2")
    )
    second = rig.start()
    try:
        time.sleep(10)  # both join the group and split the six partitions
        rig.produce(rig.values + extra)
        rig.wait_for(lambda: expected <= rig.verdict_keys())
        time.sleep(3)
        assert first.poll() is None
        assert second.poll() is None
        counts = [_events_processed(int(port)) for port in web]
        # each client's per-minute counts live on the worker holding its partition;
        # asked at either worker, the answer is the same and complete
        ns = _namespace(extra[0])
        clients = [f"{ns}/extra-{i}" for i in range(0, 120, 12)]
        answers = {c: [_client_events(int(port), c) for port in web] for c in clients}
    finally:
        stop(first)
        stop(second)
    assert rig.verdict_keys() == expected
    alerts = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, rig.topics["alerts"]))]
    ids = [a["metadata"]["uid"] for a in alerts]
    assert len(ids) == len(set(ids))
    assert min(counts) > 0, f"both workers processed events: {counts}"
    assert answers == {c: [1, 1] for c in clients}


def _bot_events(
    names: list[str], start: float, pod: str, resolving: int = 0, step: float = 0.3
) -> list[tuple[bytes, bytes]]:
    """A bot's DNS as v1 events, ``step`` seconds apart: the names answered
    NXDOMAIN, but the last ``resolving`` ones resolve."""
    out = []
    for i, name in enumerate(names):
        t = start + i * step
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
        resolves = i >= len(names) - resolving
        e = {
            "v": 1, "ts": f"{ts}.{int(t % 1 * 1e6):06d}Z",
            "node": {"id": "n", "cluster": "c", "namespace": "payments", "workload": "batch",
                     "pod": pod, "service_account": "batch"},
            "client": {"ip": "10.9.0.7", "port": 40000 + i}, "transport": "tcp",
            "query": {"id": i, "name": name, "type": "A", "class": "IN", "rd": True,
                      "cd": False, "do": False},
            "response": {"rcode": "NOERROR" if resolves else "NXDOMAIN", "aa": False,
                         "tc": False, "ra": True, "ad": False,
                         "answers": [{"name": name, "type": "A", "ttl": 60,
                                      "data": "198.51.100.9"}] if resolves else [],
                         "min_ttl": 60 if resolves else None},
            "latency_us": 900, "action": "allowed", "policy_version": 0,
        }  # fmt: skip
        out.append((f"payments/{pod}".encode(), json.dumps(e).encode()))
    return out


def _committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The consumer group's committed offset of one partition (-1: none)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        meta = offsets.get(TopicPartition(topic, partition))
        return -1 if meta is None else meta.offset

    return asyncio.run(run())


def test_two_workers_kill_9_mid_burst_the_survivor_names_the_pod_once_with_all_evidence(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """Two workers on a 12-partition topic; an infected pod sends half a DGA
    burst, which the worker holding its partition handles and commits; that
    worker is killed with SIGKILL and the rest of the burst arrives. The
    survivor takes the partition over, with the pod's detector state from the
    changelog, and starts after the committed half: it names the pod once,
    from evidence on both sides of the kill, and blocks the C2 the burst ends
    in. Neither half alone names the pod (checked in-process first), so the
    naming proves that no evidence was reset."""
    from aiokafka.partitioner import murmur2

    rig = Rig(kafka_bootstrap, redis_url.rsplit("/", 1)[0] + "/6", tmp_path, partitions=12)
    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    names = [line.split(",")[1] for line in (data / "dga_train.csv").read_text().splitlines()
             if line.startswith("cryptolocker,")]  # fmt: skip
    start = time.time() - 60
    before = _bot_events(names[:6], start, "bot-1")
    after = _bot_events(names[6:12], start + 1.8, "bot-1", resolving=1)
    # the pod's later, ordinary queries move its clock past the C2's confirmation
    after += _bot_events(["wikipedia.org", "github.com"], start + 20, "bot-1", resolving=2)
    bot = "payments/bot-1"
    c2 = names[11]

    def decided(values: list[tuple[bytes, bytes]]) -> list[tuple[str, str | None]]:
        pipeline = Pipeline(artifact.load()[0])
        events = sorted((from_v1(json.loads(v)) for _, v in values), key=lambda e: e.ts)
        return [(d.finding.client, d.finding.name) for d in pipeline.process(events).decisions
                if d.finding.detector == "infected_client"]  # fmt: skip

    assert decided(before) == []
    assert decided(after) == []
    assert decided(before + after) == [(bot, None), (bot, c2)]
    partition = (murmur2(bot.encode()) & 0x7FFFFFFF) % 12
    # background clients, so that both workers hold partitions and work
    warm = []
    for i in range(120):
        e = json.loads(rig.values[1][1])
        e["node"]["pod"] = f"warm-{i}"
        warm.append((f"{e['node']['namespace']}/warm-{i}".encode(), json.dumps(e).encode()))
    # rebalances and table recovery logged: what to read if the survivor does not resume
    rig.env = dict(rig.env, DNSGUARD_WORKER_LOG_LEVEL="info")
    webs = [int(rig.env["DNSGUARD_WORKER_WEB_PORT"]), free_ports(1)[0]]
    procs = [rig.start()]
    rig.env = dict(rig.env, DNSGUARD_WORKER_WEB_PORT=str(webs[1]),
                   DNSGUARD_WORKER_DATA_DIR=str(tmp_path / "w2"))  # fmt: skip
    procs.append(rig.start())
    group, topic = rig.env["DNSGUARD_WORKER_APP_ID"], rig.topics["events"]
    try:
        time.sleep(10)  # both join the group and split the twelve partitions
        rig.produce(warm)
        rig.wait_for(lambda: min(_events_processed(w) for w in webs) > 0)
        end = _committed(kafka_bootstrap, group, topic, partition)
        time.sleep(3)  # the warm-up is over: the next events counted are the bot's
        seen = [_events_processed(w) for w in webs]
        rig.produce(before)
        # handled, and committed (Faust flushes the changelog before it commits)
        rig.wait_for(lambda: _client_events(webs[0], bot) == len(before))
        rig.wait_for(lambda: _committed(kafka_bootstrap, group, topic, partition)
                     >= max(end, 0) + len(before))  # fmt: skip
        grew = [_events_processed(w) - n for w, n in zip(webs, seen, strict=True)]
        assert sorted(grew) == [0, len(before)], grew  # one worker holds the pod
        owner = webs[grew.index(len(before))]
        survivor = webs[1 - webs.index(owner)]
        victim = procs[webs.index(owner)]
        victim.send_signal(signal.SIGKILL)  # no clean shutdown
        victim.wait()
        rig.produce(after)
        rig.wait_for(lambda: f"ns:payments|{c2}" in rig.verdict_keys(), timeout=120)
        time.sleep(3)
        restored = _metric(survivor, "dnsguard_worker_client_states_restored_total")
        counted = _client_events(survivor, bot)
    finally:
        for p in procs:
            stop(p)
    alerts = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, rig.topics["alerts"]))]
    ids = [a["metadata"]["uid"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    mine = [a["unmapped"]["dnsguard"] for a in alerts
            if a["src_endpoint"]["owner"]["name"] == bot]  # fmt: skip
    pod_named = [a for a in mine if a["detector"] == "infected_client" and a["name"] is None]
    assert len(pod_named) == 1, mine
    # named from names on both sides of the kill: after it came five NXDOMAIN names
    assert pod_named[0]["evidence"]["nxdomain_names"] > 5
    assert restored > 0
    assert counted >= len(before) + len(after)  # nothing lost (at least once)


def test_a_client_in_many_batches_has_its_state_written_once_a_second(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """A pod whose records come a tenth of a second apart is in a batch of
    its own each time; its detector state and counts reach the changelog
    once per save interval, not once per batch, and nothing is lost."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.engine.worker import SAVE_EVERY_S, STATE_TABLE

    rig = Rig(kafka_bootstrap, redis_url.rsplit("/", 1)[0] + "/5", tmp_path, seconds=30)
    web = int(rig.env["DNSGUARD_WORKER_WEB_PORT"])
    proc = rig.start()
    client = b"shop/web-7d9f"
    warm = rig.values[:20]
    mine = [(k, v) for k, v in rig.values[20:] if k == client][:40]
    seconds = 0.1 * len(mine)

    async def trickle() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for k, v in mine:
                await producer.send_and_wait(rig.topics["events"], v, key=k)
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    async def writes(topic: str) -> int:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest", group_id=None)  # fmt: skip
        await consumer.start()
        n = 0
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    n += sum(r.key == client for r in records)
        finally:
            await consumer.stop()
        return n

    try:
        rig.produce(warm)  # the worker has its partitions and is working
        rig.wait_for(lambda: _events_processed(web) > 0)
        time.sleep(2 * SAVE_EVERY_S)
        before = asyncio.run(writes(f"{rig.env['DNSGUARD_WORKER_APP_ID']}-{STATE_TABLE}-changelog"))
        batches = _metric(web, "dnsguard_worker_batch_records_count")
        asyncio.run(trickle())
        total = len(mine) + sum(k == client for k, _ in warm)
        rig.wait_for(lambda: _client_events(web, client.decode()) >= total)
        time.sleep(2 * SAVE_EVERY_S)
        batches = _metric(web, "dnsguard_worker_batch_records_count") - batches
        after = asyncio.run(writes(f"{rig.env['DNSGUARD_WORKER_APP_ID']}-{STATE_TABLE}-changelog"))
    finally:
        stop(proc)
    assert batches >= len(mine) / 2, batches  # the pod came in many batches
    assert 1 <= after - before <= seconds / SAVE_EVERY_S + 2, (after - before, batches)
