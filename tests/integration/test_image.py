"""The OCI images ``make image`` builds (``deploy/image/build.sh``): the
services image runs ``dnsguard`` as a non-root user, and its collector, run
inside the image, takes events into the local stack's Kafka; the filter image
holds the Wasm plugin where Istio looks for it, and the UDP module."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.engine.topics import TopicSpec, ensure_topics
from streams.ingest.batch import decode_batch_v2
from streams.stack.processes import free_ports
from tests.integration.test_collector_kafka import _drain
from tests.unit.test_collector import event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
TOKEN = "image-token-0123456789"


def buildah(*args: str, timeout: float = 300) -> str:
    out = subprocess.run(
        ["buildah", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def images() -> str:
    """Builds both images once; yields the version tag."""
    out = subprocess.run([str(ROOT / "deploy" / "image" / "build.sh")], capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    import tomllib

    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


@pytest.fixture
def container(images: str) -> Iterator[str]:
    ctr = buildah("from", "-q", f"dnsguard:{images}").strip()
    try:
        yield ctr
    finally:
        buildah("rm", ctr)


def test_the_services_image_runs_dnsguard_as_a_non_root_user(images: str, container: str) -> None:
    config = json.loads(buildah("inspect", "--type", "image", f"dnsguard:{images}"))["OCIv1"][
        "config"
    ]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/dnsguard/bin/dnsguard"]
    assert "replay" in buildah("run", container, "--", "dnsguard", "--help")
    assert buildah("run", container, "--", "id", "-u").strip() == "10001"
    # the model and the PSL ship inside the wheel: scoring works offline
    scored = subprocess.run(["buildah", "run", container, "--", "dnsguard", "score", "-"], env=ENV,
                            input="xjw9q2kz7vbp.com\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert scored.stdout.splitlines()[1].startswith("xjw9q2kz7vbp.com,")


def test_the_collector_in_the_image_takes_events_into_kafka(
    container: str, kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    asyncio.run(
        ensure_topics(
            kafka_bootstrap, [TopicSpec(unique_topic, 1), TopicSpec(unique_topic + ".dlq", 1)]
        )
    )
    (port,) = free_ports(1)
    env_args = [f"--env=DNSGUARD_{k}={v}" for k, v in {
        "KAFKA_BOOTSTRAP": kafka_bootstrap, "COLLECTOR_PORT": str(port), "COLLECTOR_TOKEN": TOKEN,
        "EVENTS_TOPIC": unique_topic, "DLQ_TOPIC": unique_topic + ".dlq"}.items()]  # fmt: skip
    log_path = tmp_path / "collector.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(["buildah", "run", *env_args, container, "--", "dnsguard", "collector"],
                            env=ENV, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (
                    proc.stdout.read().decode()[-3000:] if proc.stdout else ""
                )
                assert time.monotonic() < deadline, "the collector in the image never answered"
                time.sleep(0.5)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events",
            data=json.dumps([event("a.example.com"), event("b.example.com")]).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
        ((key, value),) = asyncio.run(_drain(kafka_bootstrap, unique_topic, 1))
        assert key == b"shop/web-1"
        # the image's collector writes what this tree's does: one v2 batch per client
        assert [e.name for e in decode_batch_v2(value).events] == ["a.example.com", "b.example.com"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_filter_image_holds_the_plugin_and_the_udp_module(images: str) -> None:
    ctr = buildah("from", "-q", f"dnsguard-filter:{images}").strip()
    try:
        mount = Path(buildah("mount", ctr).strip())
        try:
            assert sorted(p.name for p in mount.iterdir()) == [
                "libdnsguard_native.so",
                "plugin.wasm",
            ]
            assert (mount / "plugin.wasm").read_bytes()[:4] == b"\0asm"
            assert (mount / "libdnsguard_native.so").read_bytes()[:4] == b"\x7fELF"
        finally:
            buildah("umount", ctr)
    finally:
        buildah("rm", ctr)
