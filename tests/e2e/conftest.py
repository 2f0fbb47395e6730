"""Real Envoy with the built dnsguard filter, a DNS upstream, the collector and Kafka."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streams.engine.topics import TopicSpec, ensure_topics
from streams.ingest.batch import SCHEMA_V2_PATH, decode_batch_v2, to_v1
from streams.sim.resolver import Upstream, UpstreamServer
from streams.stack.envoy import WASM_PATH, FilterOptions, FilterPorts, filter_bootstrap
from streams.stack.processes import CollectorProcess, EnvoyProcess, free_ports
from tests.conftest import TlsMaterial, make_tls_material

SCHEMA_V2 = json.loads(SCHEMA_V2_PATH.read_text())

TOKEN = "e2e-collector-token-0123"


@pytest.fixture(scope="session")
def wasm_module() -> Path:
    if not WASM_PATH.exists():
        raise RuntimeError(f"{WASM_PATH} is missing: run filter/build.sh (make setup does)")
    return WASM_PATH


CLIENT_SPIFFE = "spiffe://cluster.local/ns/shop/sa/web-sa"


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate with a SPIFFE URI."""
    return make_tls_material(tmp_path_factory.mktemp("tls"), CLIENT_SPIFFE)


@dataclass
class FilterRig:
    ports: FilterPorts
    upstream: Upstream
    envoy: EnvoyProcess
    topic: str
    dlq: str
    bootstrap: str
    tls: TlsMaterial


@pytest.fixture(scope="module")
def rig(
    kafka_bootstrap: str,
    wasm_module: Path,
    tls_material: TlsMaterial,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FilterRig]:
    work = tmp_path_factory.mktemp("rig")
    admin, dns_tcp, up, up_doh, col, doh, dot, native_dot = free_ports(8)
    topic = f"e2e.events.{uuid.uuid4().hex[:8]}"
    dlq = topic + ".dlq"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 3), TopicSpec(dlq, 1)]))
    ports = FilterPorts(
        admin=admin,
        dns_tcp=dns_tcp,
        upstream_dns=up,
        collector=col,
        doh=doh,
        upstream_doh=up_doh,
        dot=dot,
        native_dot=native_dot,
    )
    opts = FilterOptions(
        token=TOKEN,
        query_timeout_ms=5_000,
        tls_cert=tls_material.server_cert,
        tls_key=tls_material.server_key,
        tls_client_ca=tls_material.ca,
    )
    upstream = Upstream()
    with UpstreamServer(upstream, up, up_doh):
        collector = CollectorProcess(
            col, kafka_bootstrap, topic, dlq, work / "collector.log", TOKEN
        )
        envoy = EnvoyProcess(filter_bootstrap(ports, opts), work).start()
        try:
            yield FilterRig(ports, upstream, envoy, topic, dlq, kafka_bootstrap, tls_material)
        finally:
            envoy.stop()
            collector.stop()


def records_by_name(
    bootstrap: str,
    topic: str,
    names: set[str],
    name_of: Callable[[dict], str | None],
    timeout: float = 20.0,
) -> dict[str, list[dict]]:
    """Every JSON record on ``topic`` whose ``name_of`` is in ``names``, once each name has one."""

    async def run() -> dict[str, list[dict]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        found: dict[str, list[dict]] = {}
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and set(found) != names:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        value = json.loads(r.value)
                        # the events topic holds v2 batch records and bundles of
                        # them (JSON arrays): each batch checked against the
                        # published schema, read as v1 objects
                        items: list[Any] = []
                        for item in value if isinstance(value, list) else [value]:
                            if isinstance(item, dict) and item.get("v") == 2:
                                jsonschema.validate(item, SCHEMA_V2)
                                items += to_v1(decode_batch_v2(json.dumps(item).encode()))
                            else:
                                items.append(item)
                        for record in items:
                            name = name_of(record)
                            if name in names:
                                found.setdefault(name, []).append(record)
            return found
        finally:
            await consumer.stop()

    return asyncio.run(run())


def events_for(
    bootstrap: str, topic: str, names: set[str], timeout: float = 20.0
) -> dict[str, list[dict]]:
    """Every event on ``topic`` whose query name is in ``names`` (as a v1 object,
    its v2 batch checked against the schema), once all have arrived."""
    return records_by_name(bootstrap, topic, names, lambda ev: ev["query"]["name"], timeout)


@pytest.fixture(scope="module")
def loop_rig(
    kafka_bootstrap: str, wasm_module: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Envoy with the filter and a feed, the feed server on its own Redis, a
    tampering proxy between them, the collector (``tests/e2e/loop.py``)."""
    from tests.e2e.loop import start_loop

    with start_loop(kafka_bootstrap, wasm_module, tmp_path_factory.mktemp("loop")) as rig:
        yield rig


def run_cleanly(
    tmp_path: Path, ports: FilterPorts, exercise: Callable[[EnvoyProcess], None]
) -> None:
    """Envoy with ``ports``' listeners, in front of the test resolver on
    ``ports.upstream_dns``: ``exercise`` runs against it, then Envoy stops;
    it must exit 0 with nothing in its log that says a module crashed."""
    with UpstreamServer(Upstream(), ports.upstream_dns, free_ports(1)[0]):
        envoy = EnvoyProcess(filter_bootstrap(ports, FilterOptions(token=TOKEN)), tmp_path)
        envoy.start()
        assert envoy.child is not None
        proc = envoy.child.proc
        exercise(envoy)
        envoy.stop()
    log = (tmp_path / "envoy.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    for bad in ("panicked", "Caught Segmentation", "Backtrace", "critical"):
        assert bad not in log, log[-3000:]
