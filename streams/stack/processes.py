"""dnsguard's services and Envoy as child processes on this machine: started,
waited for until they answer, stopped. Used by the demo, the benchmarks and
the tests, so all three run the real commands the same way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streams.errors import StackError
from streams.stack.envoy import NATIVE_DIR
from streams.stack.services import envoy_binary


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 (held together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_http(url: str, expect: bytes | None = None, timeout: float = 20.0) -> None:
    """Until ``url`` answers (with ``expect`` as its body, if given)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if expect is None or r.read().strip() == expect:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise StackError(f"{url} not ready in {timeout:.0f}s: {last}")


def http_text(url: str) -> str:
    """The body at ``url``, or "" if it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) in ``text``."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


class Child:
    """A child process with its log file; ``stop`` terminates it, then kills."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log = args, log
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def dnsguard(command: str, env: dict[str, str], log: Path) -> Child:
    """``dnsguard COMMAND`` with ``env`` added to this process's environment."""
    return Child([sys.executable, "-m", "streams.cli", command], log, dict(os.environ, **env))


class EnvoyProcess:
    """Envoy on a bootstrap config (``streams.stack.envoy``), ready once its admin
    port says LIVE."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "envoy") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.admin = int(config["admin"]["address"]["socket_address"]["port_value"])
        self.child: Child | None = None

    def start(self, concurrency: int = 2) -> EnvoyProcess:
        args = [str(envoy_binary()), "-c", str(self.config_path), "--use-dynamic-base-id",
                "--concurrency", str(concurrency), "-l", "warn"]  # fmt: skip
        # the UDP module (lib<name>.so) is looked up here, unless the caller says where
        env = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR), **os.environ}
        self.child = Child(args, self.log_path, env)
        try:
            wait_http(f"http://127.0.0.1:{self.admin}/ready", b"LIVE")
        except StackError as exc:
            tail = self.child.log_tail()
            self.stop()
            raise StackError(f"{exc}\n{tail}") from exc
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(10)
            self.child = None

    def stats(self) -> dict[str, int]:
        """The Wasm filter's counters and gauges (``wasmcustom.dnsguard.*``), by short name."""
        return self._stats("wasmcustom.dnsguard.")

    def module_stats(self) -> dict[str, int]:
        """The UDP module's counters and gauges (``dynamicmodulescustom.dnsguard.*``)."""
        return self._stats("dynamicmodulescustom.dnsguard.")

    def tcp_module_stats(self) -> dict[str, int]:
        """The native network filter's counters and gauges (``dynamicmodulescustom.dnsguard_tcp.*``)."""
        return self._stats("dynamicmodulescustom.dnsguard_tcp.")

    def _stats(self, prefix: str) -> dict[str, int]:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.admin}/stats?filter=dnsguard&format=json", timeout=2
        ) as r:
            data = json.load(r)
        return {
            s["name"].removeprefix(prefix): s["value"]
            for s in data["stats"]
            if "value" in s and s["name"].startswith(prefix)
        }


class CollectorProcess:
    """``dnsguard collector`` on ``port`` into ``topic``, ready once /healthz answers."""

    def __init__(
        self, port: int, bootstrap: str, topic: str, dlq: str, log: Path, token: str
    ) -> None:
        env = {"DNSGUARD_COLLECTOR_PORT": str(port), "DNSGUARD_COLLECTOR_TOKEN": token,
               "DNSGUARD_KAFKA_BOOTSTRAP": bootstrap, "DNSGUARD_EVENTS_TOPIC": topic,
               "DNSGUARD_DLQ_TOPIC": dlq}  # fmt: skip
        self.port = port
        self.child = dnsguard("collector", env, log)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
        except StackError as exc:
            tail = self.child.log_tail()
            self.stop()
            raise StackError(f"{exc}\n{tail}") from exc

    def stop(self) -> None:
        self.child.stop(10)


class FeedProcess:
    """``dnsguard feed`` on ``port`` over ``redis_url``, signing with ``signing_key``."""

    def __init__(self, port: int, redis_url: str, log: Path, signing_key: str, token: str) -> None:
        self.port, self.log = port, log
        self.env = {"DNSGUARD_FEED_PORT": str(port), "DNSGUARD_FEED_SIGNING_KEY": signing_key,
                    "DNSGUARD_FEED_TOKEN": token, "DNSGUARD_REDIS_URL": redis_url}  # fmt: skip
        self.child: Child | None = None

    def start(self) -> FeedProcess:
        self.child = dnsguard("feed", self.env, self.log)
        wait_http(f"http://127.0.0.1:{self.port}/healthz")
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(10)
            self.child = None
