"""Fixtures that start real services for the integration and e2e tests.

Each session gets its own Kafka (KRaft) and Redis on free ports in a temporary
folder, started by the same code as ``dnsguard stack`` and always stopped at
the end, also when tests fail. Nothing here is skipped when a service is
missing: the fixture fails with the service's log tail instead.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from streams.settings import load_stack_settings
from streams.sim.workloads import DEFAULT_DATA
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Redis, Service, Stack

SHARED_DATA = DEFAULT_DATA


@dataclass(frozen=True)
class TlsMaterial:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_material(d: Path, client_uri: str) -> TlsMaterial:
    """A throwaway CA (openssl), a server certificate for 127.0.0.1/localhost and a
    client certificate carrying ``client_uri`` as its URI SAN; keys are PKCS#8 PEM."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=dnsguard test CA")  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", f"subjectAltName=URI:{client_uri}"),
    ):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=dnsguard {name}")  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return TlsMaterial(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key"
    )


def _stack(tmp: Path, services: tuple[type[Service], ...]) -> Stack:
    kafka, controller, redis_port, admin = free_ports(4)
    settings = replace(
        load_stack_settings({}),
        state_dir=tmp,
        kafka_port=kafka,
        kafka_controller_port=controller,
        redis_port=redis_port,
        envoy_admin_port=admin,
        kafka_heap_mb=512,
    )
    return Stack(settings, services)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").exists():
        raise RuntimeError(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Real Redis and Kafka for the whole test session."""
    stack = _stack(tmp_path_factory.mktemp("stack"), (Redis, Kafka))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Stack) -> str:
    return services.settings.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(services: Stack) -> str:
    return services.settings.redis_url


@pytest.fixture
def unique_topic() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"
