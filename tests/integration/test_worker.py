"""The Faust worker on real Kafka and Redis: events in; alerts, verdicts and dead letters out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from streams.engine.topics import TopicSpec, ensure_topics
from streams.policy.store import read_verdicts
from streams.sim.workloads import Simulator
from streams.stack.processes import free_ports

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for k, v in values:
            await producer.send(topic, v, key=k)
        await producer.flush()
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, timeout: float = 3.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return out


def client_counts(web: int, client: str) -> dict:
    url = f"http://127.0.0.1:{web}/clients/counts?client={urllib.parse.quote(client)}&minutes=60"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_worker_turns_events_into_alerts_verdicts_and_dead_letters(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"w{tag}.{name}" for name in ("events", "alerts", "verdicts", "dlq")}
    redis_db = redis_url.rsplit("/", 1)[0] + "/3"
    asyncio.run(
        ensure_topics(
            kafka_bootstrap,
            [TopicSpec(topics["events"], 6), TopicSpec(topics["alerts"], 1), TopicSpec(topics["dlq"], 1),
             TopicSpec(topics["verdicts"], 1, {"cleanup.policy": "compact"})],
        )
    )  # fmt: skip
    sim = Simulator()
    events = list(sim.events(time.time() - 40, 40))
    values = [
        (f"{e['node']['namespace']}/{e['node']['pod']}".encode(), json.dumps(e).encode())
        for e in events
    ]
    clients = Counter(f"{e['node']['namespace']}/{e['node']['pod']}" for e in events)
    values.insert(10, (b"bad", b"{not json"))
    values.insert(20, (b"bad", json.dumps({"v": 1, "ts": "2026-01-01T00:00:00.000000Z"}).encode()))
    values.insert(30, (b"bad", b"[]"))  # JSON, but not an object
    values.insert(40, (b"bad", b"\xff\xfe"))  # not UTF-8
    asyncio.run(_produce(kafka_bootstrap, topics["events"], values))

    (web,) = free_ports(1)
    env = dict(
        os.environ,
        DNSGUARD_KAFKA_BOOTSTRAP=kafka_bootstrap,
        DNSGUARD_REDIS_URL=redis_db,
        DNSGUARD_WORKER_APP_ID=f"w{tag}",
        DNSGUARD_EVENTS_TOPIC=topics["events"],
        DNSGUARD_ALERTS_TOPIC=topics["alerts"],
        DNSGUARD_VERDICTS_TOPIC=topics["verdicts"],
        DNSGUARD_DLQ_TOPIC=topics["dlq"],
        DNSGUARD_WORKER_WEB_PORT=str(web),
        DNSGUARD_WORKER_DATA_DIR=str(tmp_path / "worker"),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    async def verdicts_when_done() -> dict[str, dict]:
        client = Redis.from_url(redis_db)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                dead = await _read(kafka_bootstrap, topics["dlq"], 1.0)
                stored = await read_verdicts(client)
                if len(dead) == 4 and stored:
                    await asyncio.sleep(3)  # let the last batches land
                    return await read_verdicts(client)
            raise AssertionError(f"worker produced nothing in time:\n{log.read_text()[-3000:]}")
        finally:
            await client.aclose()

    try:
        stored = asyncio.run(verdicts_when_done())
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        counts = {c: client_counts(web, c) for c in clients}
        refused = [
            http_status(f"http://127.0.0.1:{web}/clients/counts{q}")
            for q in ("", "?client=x&minutes=0", "?client=x&minutes=61", "?client=x&minutes=a")
        ]
    finally:
        proc.terminate()
        proc.wait(30)
    # the changelog-backed per-client counts, read back per minute over the last hour
    for c, body in counts.items():
        assert len(body["minutes"]) == 60
        assert sum(m["events"] for m in body["minutes"]) == clients[c], (c, body)
    assert refused == [400, 400, 400, 400]
    for name in (
        "dnsguard_worker_events_total",
        "dnsguard_worker_dlq_total 4.0",
        "dnsguard_worker_consumer_lag{",
    ):
        assert name in metrics, name
    dga_names = {v["name"] for v in stored.values() if v["detector"] in ("infected_client", "dga")}
    assert dga_names & sim.c2  # the infected pod's C2 names (the ones that resolved) are blocked
    assert dga_names <= set(sim.dga)
    # ... and only names the infected or the exfiltrating pod asked for
    for v in stored.values():
        assert "payments/batch-1f0a" in v["reason"] or "analytics/etl-9c3e" in v["reason"], v[
            "reason"
        ]
    # one pod's behaviour: scoped to that pod's namespace, never global
    assert {k.split("|")[0] for k in stored} <= {"ns:payments", "ns:analytics"}
    dead = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, topics["dlq"]))]
    assert len(dead) == 4
    assert {d["topic"] for d in dead} == {topics["events"]}
    assert all(isinstance(d["offset"], int) and d["error"] for d in dead)
    alerts = [json.loads(v) for v in asyncio.run(_read(kafka_bootstrap, topics["alerts"]))]
    assert {a["class_uid"] for a in alerts} == {4003}
    detectors = {a["unmapped"]["dnsguard"]["detector"] for a in alerts}
    assert "infected_client" in detectors
    ids = [a["metadata"]["uid"] for a in alerts]
    assert len(ids) == len(set(ids))  # no duplicate alerts
    verdict_records = asyncio.run(_read(kafka_bootstrap, topics["verdicts"]))
    assert {json.loads(v)["name"] for v in verdict_records} >= dga_names


def test_worker_refuses_to_start_when_an_output_topic_is_missing(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(f"m{tag}.events", 2)]))
    env = dict(
        os.environ,
        DNSGUARD_KAFKA_BOOTSTRAP=kafka_bootstrap,
        DNSGUARD_REDIS_URL=redis_url,
        DNSGUARD_WORKER_APP_ID=f"m{tag}",
        DNSGUARD_EVENTS_TOPIC=f"m{tag}.events",
        DNSGUARD_ALERTS_TOPIC=f"m{tag}.alerts",  # none of the outputs exist
        DNSGUARD_VERDICTS_TOPIC=f"m{tag}.verdicts",
        DNSGUARD_DLQ_TOPIC=f"m{tag}.dlq",
        DNSGUARD_WORKER_WEB_PORT=str(free_ports(1)[0]),
        DNSGUARD_WORKER_DATA_DIR=str(tmp_path / "worker"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"m{tag}.alerts, m{tag}.verdicts, m{tag}.dlq" in err
    assert f"m{tag}.events" not in err.split("missing:")[1]


def test_a_domain_new_to_a_namespace_is_counted_once_across_workers(
    redis_url: str, tmp_path: Path
) -> None:
    """Two workers, each holding pods of the same namespace, both see a domain
    their own pods never asked for: the first to claim it in Redis counts it
    as newly observed, the other drops its candidate. A domain only one of
    them saw is counted by that one."""
    from dataclasses import replace

    from detectors.events import Answer, DnsEvent
    from detectors.newdomain import NewDomainSettings
    from detectors.pipeline import DetectorSettings, Pipeline
    from models import artifact
    from streams.engine.step import step
    from streams.engine.worker import Worker
    from streams.settings import load_worker_settings

    tag = uuid.uuid4().hex[:8]
    settings = load_worker_settings({
        "DNSGUARD_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/7",
        "DNSGUARD_WORKER_APP_ID": f"nod{tag}",
    })  # fmt: skip
    model = artifact.load()[0]
    detectors = DetectorSettings(new_domain=NewDomainSettings(warmup_s=0, rotate_s=3600))
    answer = (Answer("A", 300, "198.51.100.7"),)

    def events(pod: str, names: list[str]) -> list[DnsEvent]:
        return [DnsEvent(1000.0 + i, f"shop/{pod}", "shop", f"{n}-{tag}.com", "A", "NOERROR",
                         answer) for i, n in enumerate(names)]  # fmt: skip

    workers = [
        Worker(replace(settings, data_dir=tmp_path / f"w{i}"), Pipeline(model, detectors))
        for i in range(2)
    ]
    batches = [events("a", ["both-saw", "only-a"]), events("b", ["both-saw"])]
    outs = [step(w.pipeline, b) for w, b in zip(workers, batches, strict=True)]
    assert [o.findings["new_domain"] for o in outs] == [2, 1]  # each worker's own view

    async def claim() -> None:
        try:
            for w, out in zip(workers, outs, strict=True):
                await w.claim_new_domains(out)
        finally:
            for w in workers:
                await w.redis.aclose()

    asyncio.run(claim())
    assert [o.findings["new_domain"] for o in outs] == [2, 0]
    kept = [d.finding.name for o in outs for d in o.decisions if d.finding.detector == "new_domain"]
    assert sorted(kept) == sorted([f"both-saw-{tag}.com", f"only-a-{tag}.com"])
