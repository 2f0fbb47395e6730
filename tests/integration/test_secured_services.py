"""Authenticated Kafka (SASL/PLAIN), Kafka over TLS, and Redis (ACL user, default
user off): the collector, a worker and the feed server work with credentials
and trust from the environment, and fail clearly without them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from streams.engine.topics import TopicSpec, ensure_topics
from streams.settings import KafkaSecurity, Secret, load_stack_settings
from streams.sim.workloads import Simulator
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Stack
from streams.stack.services import Redis as RedisService
from tests.conftest import make_tls_material

pytestmark = pytest.mark.integration

USER, PASSWORD = "dnsguard", "kafka-" + uuid.uuid4().hex
REDIS_USER, REDIS_PASSWORD = "dnsguard", "redis-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("secured")
    tls = make_tls_material(work, "spiffe://cluster.local/ns/dnsguard/sa/worker")
    keystore = work / "kafka-keystore.pem"  # the broker's key and certificate chain
    keystore.write_text(tls.server_key.read_text() + tls.server_cert.read_text())
    kafka, controller, sasl, ssl_port, redis = free_ports(5)
    settings = replace(load_stack_settings({}), state_dir=work, kafka_port=kafka, kafka_controller_port=controller,
                       redis_port=redis, kafka_heap_mb=512, kafka_sasl_port=sasl,
                       kafka_sasl_users=((USER, Secret(PASSWORD)),), kafka_ssl_port=ssl_port,
                       kafka_ssl_keystore=keystore)  # fmt: skip
    stack = Stack(settings, (RedisService, Kafka))
    stack.up()
    try:
        cli = ["redis-cli", "-p", str(redis)]
        acl = f"ACL SETUSER {REDIS_USER} on >{REDIS_PASSWORD} ~dnsguard:* &* +@all"
        subprocess.run([*cli, *acl.split()], check=True, capture_output=True)
        subprocess.run([*cli, "ACL", "SETUSER", "default", "off"], check=True, capture_output=True)
        yield {
            "DNSGUARD_KAFKA_BOOTSTRAP": f"127.0.0.1:{sasl}",
            "DNSGUARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DNSGUARD_KAFKA_SASL_USERNAME": USER,
            "DNSGUARD_KAFKA_SASL_PASSWORD": PASSWORD,
            "DNSGUARD_REDIS_URL": f"redis://127.0.0.1:{redis}/0",
            "DNSGUARD_REDIS_USERNAME": REDIS_USER,
            "DNSGUARD_REDIS_PASSWORD": REDIS_PASSWORD,
            "work": str(work),
            "tls_bootstrap": f"127.0.0.1:{ssl_port}",
            "tls_ca": str(tls.ca),
        }
    finally:
        stack.down()


def security() -> KafkaSecurity:
    return KafkaSecurity("SASL_PLAINTEXT", "PLAIN", USER, Secret(PASSWORD))


def http_status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # not listening yet


COLLECTOR_TOKEN = "collector-token-0123456789"
SERVICE_ENV = ("DNSGUARD_KAFKA_BOOTSTRAP", "DNSGUARD_KAFKA_SECURITY_PROTOCOL", "DNSGUARD_KAFKA_SASL_USERNAME",
               "DNSGUARD_KAFKA_SASL_PASSWORD", "DNSGUARD_REDIS_URL", "DNSGUARD_REDIS_USERNAME",
               "DNSGUARD_REDIS_PASSWORD")  # fmt: skip


def service_env(secured: dict[str, str]) -> dict[str, str]:
    return {k: secured[k] for k in SERVICE_ENV}


def test_worker_and_collector_with_sasl_kafka_and_redis_acl(secured: dict[str, str]) -> None:
    run_collector_and_worker(secured, service_env(secured), security(), redis_db=1)


def test_worker_and_collector_with_kafka_over_tls(secured: dict[str, str]) -> None:
    """The same pipeline through the broker's TLS listener, trusting only the test CA."""
    env = service_env(secured)
    for k in ("DNSGUARD_KAFKA_SASL_USERNAME", "DNSGUARD_KAFKA_SASL_PASSWORD"):
        env.pop(k)
    env |= {"DNSGUARD_KAFKA_BOOTSTRAP": secured["tls_bootstrap"], "DNSGUARD_KAFKA_SECURITY_PROTOCOL": "SSL",
            "DNSGUARD_KAFKA_SSL_CAFILE": secured["tls_ca"]}  # fmt: skip
    run_collector_and_worker(
        secured, env, KafkaSecurity("SSL", ssl_cafile=Path(secured["tls_ca"])), redis_db=2
    )


def test_kafka_over_tls_refuses_an_untrusted_broker(secured: dict[str, str]) -> None:
    """Without the test CA the broker's certificate is not trusted: no connection."""
    from aiokafka.errors import KafkaConnectionError

    async def produce() -> None:
        p = AIOKafkaProducer(bootstrap_servers=secured["tls_bootstrap"],
                             **KafkaSecurity("SSL").aiokafka_kwargs())  # fmt: skip
        try:
            await p.start()
        finally:
            await p.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(produce())


def run_collector_and_worker(
    secured: dict[str, str], env: dict[str, str], kafka: KafkaSecurity, redis_db: int
) -> None:
    """Events posted to the collector reach Kafka, and a worker turns them into
    verdicts in Redis (database ``redis_db``, so no other test's verdicts count)."""
    env = dict(env, DNSGUARD_REDIS_URL=env["DNSGUARD_REDIS_URL"].rsplit("/", 1)[0] + f"/{redis_db}")
    bootstrap = env["DNSGUARD_KAFKA_BOOTSTRAP"]
    tag = uuid.uuid4().hex[:6]
    topics = {n: f"s{tag}.{n}" for n in ("events", "alerts", "verdicts", "dlq")}
    asyncio.run(ensure_topics(bootstrap, [TopicSpec(t, 1) for t in topics.values()], kafka))
    web, col = free_ports(2)
    work = Path(secured["work"]) / tag
    worker_env = dict(os.environ, **env, DNSGUARD_WORKER_APP_ID=f"s{tag}", DNSGUARD_EVENTS_TOPIC=topics["events"],
                      DNSGUARD_ALERTS_TOPIC=topics["alerts"], DNSGUARD_VERDICTS_TOPIC=topics["verdicts"],
                      DNSGUARD_DLQ_TOPIC=topics["dlq"], DNSGUARD_WORKER_WEB_PORT=str(web),
                      DNSGUARD_WORKER_DATA_DIR=str(work / "worker"))  # fmt: skip
    work.mkdir()
    with (work / "worker.log").open("ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=worker_env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    collector_env = dict(os.environ, **env, DNSGUARD_COLLECTOR_PORT=str(col), DNSGUARD_EVENTS_TOPIC=topics["events"],
                         DNSGUARD_DLQ_TOPIC=topics["dlq"], DNSGUARD_COLLECTOR_TOKEN=COLLECTOR_TOKEN)  # fmt: skip
    with (work / "collector.log").open("ab") as log:
        collector = subprocess.Popen([sys.executable, "-m", "streams.cli", "collector"], env=collector_env,
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        sim = Simulator()
        # the infected pod's first two bursts: the first one's C2 is confirmed
        # when the second begins
        events = [e for e in sim.events(time.time() - 30, 30) if e["node"]["pod"] == "batch-1f0a"]
        body = json.dumps(events).encode()
        deadline = time.monotonic() + 30
        while (
            http_status(
                f"http://127.0.0.1:{col}/v1/events",
                body,
                {"content-type": "application/json", "authorization": f"Bearer {COLLECTOR_TOKEN}"},
            )
            != 202
        ):
            assert time.monotonic() < deadline, (work / "collector.log").read_text()[-2000:]
            time.sleep(0.5)

        async def verdicts() -> dict:
            r = Redis.from_url(
                env["DNSGUARD_REDIS_URL"], username=REDIS_USER, password=REDIS_PASSWORD
            )
            try:
                return await r.hgetall("dnsguard:verdicts")
            finally:
                await r.aclose()

        deadline = time.monotonic() + 90
        while not asyncio.run(verdicts()):
            assert worker.poll() is None, (work / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (work / "worker.log").read_text()[-3000:]
            time.sleep(1)
    finally:
        for p in (worker, collector):
            p.terminate()
            p.wait(30)


def test_wrong_or_missing_credentials_fail_clearly(
    secured: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = service_env(secured)

    async def produce(password: str) -> None:
        p = AIOKafkaProducer(bootstrap_servers=env["DNSGUARD_KAFKA_BOOTSTRAP"], security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_plain_username=USER, sasl_plain_password=password)  # fmt: skip
        try:
            await p.start()
        finally:
            await p.stop()

    asyncio.run(produce(PASSWORD))
    from aiokafka.errors import KafkaConnectionError

    with pytest.raises(KafkaConnectionError):
        asyncio.run(produce("wrong"))
    assert "SaslAuthenticationFailed" in caplog.text

    async def redis_without_auth() -> None:
        r = Redis.from_url(env["DNSGUARD_REDIS_URL"])
        try:
            await r.get("dnsguard:policy:version")
        finally:
            await r.aclose()

    with pytest.raises(Exception, match=r"(?i)auth|noperm"):
        asyncio.run(redis_without_auth())
    # the feed server: with the ACL user it serves, without it it answers 503 (filters keep their policy)
    from streams.policy.feed import FeedServer
    from streams.policy.signing import SigningKey
    from streams.settings import load_feed_settings

    async def feed_status(with_auth: bool) -> int:
        from aiohttp.test_utils import TestClient, TestServer

        _, signing_key = SigningKey.generate("k1")
        feed_env = dict(env, DNSGUARD_FEED_SIGNING_KEY=signing_key,
                        DNSGUARD_FEED_TOKEN="feed-token-0123456789")  # fmt: skip
        if not with_auth:
            feed_env.pop("DNSGUARD_REDIS_USERNAME")
            feed_env.pop("DNSGUARD_REDIS_PASSWORD")
        async with TestClient(TestServer(FeedServer(load_feed_settings(feed_env)).app())) as client:
            auth = {"Authorization": "Bearer feed-token-0123456789"}
            return (await client.get("/v1/policy?since=0", headers=auth)).status

    assert asyncio.run(feed_status(True)) in (200, 304)  # served (an empty store is not modified)
    assert asyncio.run(feed_status(False)) == 503
