"""Typed settings for every dnsguard service, built once and passed explicitly.

This is the only module that reads the process environment. Each section is a
frozen dataclass; :func:`load_stack_settings` validates values and raises
:class:`~streams.errors.ConfigError` naming the variable at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.policy.signing import SigningError, SigningKey

ENV_PREFIX = "DNSGUARD_"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Topics:
    """The Kafka topics' default names, the one place they are spelled."""

    events: str = "dnsguard.events"
    alerts: str = "dnsguard.alerts"
    verdicts: str = "dnsguard.verdicts"
    dlq: str = "dnsguard.events.dlq"


TOPICS = Topics()


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """Folder for downloaded, reusable artifacts (Kafka jars, filter toolchain)."""
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dnsguard"


def default_state_dir(env: Mapping[str, str]) -> Path:
    """Folder for the local stack's data, logs, pid files and ports."""
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dnsguard" / "stack"


def _defaults(cls: type) -> dict[str, Any]:
    """A settings class's field defaults by name: the loaders read them from the
    class, so each default is written once."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


class _Env:
    """Typed, validated reads of ``DNSGUARD_*`` variables."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, name: str) -> str | None:
        value = self._env.get(ENV_PREFIX + name)
        return value if value not in (None, "") else None

    def port(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if not 1 <= value <= 65535:
            raise ConfigError(f"{ENV_PREFIX}{name}={value}: a port must be in 1..65535")
        return value

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}{name}={raw!r}: expected an integer") from exc
        if minimum is not None and value < minimum:
            raise ConfigError(f"{ENV_PREFIX}{name}={value}: must be >= {minimum}")
        return value

    def path(self, name: str, default: Path) -> Path:
        raw = self.raw(name)
        return Path(raw).expanduser() if raw is not None else default

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of DNS names, lower-cased, without trailing dots."""
        raw = self.raw(name) or ""
        return tuple(n.strip().lower().rstrip(".") for n in raw.split(",") if n.strip())

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r}: expected true or false")

    def secret_text(self, name: str) -> str | None:
        """``DNSGUARD_<name>``, else the contents of the file named by
        ``DNSGUARD_<name>_FILE`` (a mounted Kubernetes Secret)."""
        raw = self.raw(name)
        if raw is not None:
            return raw
        path = self.raw(name + "_FILE")
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"{ENV_PREFIX}{name}_FILE={path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Where and how the local stack (Kafka, Redis, Envoy) runs."""

    state_dir: Path
    cache_dir: Path
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap_mb: int = 768
    redis_port: int = 16379
    redis_maxmemory_mb: int = 256
    envoy_admin_port: int = 19901
    ready_timeout_s: float = 90.0
    kafka_version: str = field(default="3.9.1")
    # an extra SASL_PLAINTEXT (PLAIN) listener, for trying authenticated clients locally
    kafka_sasl_port: int | None = None
    kafka_sasl_users: tuple[tuple[str, Secret], ...] = ()
    # an extra SSL (TLS) listener: the broker's unencrypted PKCS#8 key and its
    # certificate chain, in one PEM file
    kafka_ssl_port: int | None = None
    kafka_ssl_keystore: Path | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def validate(self) -> StackSettings:
        ports = {
            "KAFKA_PORT": self.kafka_port,
            "KAFKA_CONTROLLER_PORT": self.kafka_controller_port,
            "REDIS_PORT": self.redis_port,
            "ENVOY_ADMIN_PORT": self.envoy_admin_port,
        }
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"local stack ports must be distinct, got {ports}")
        if self.kafka_heap_mb < 256:
            raise ConfigError(f"{ENV_PREFIX}KAFKA_HEAP_MB={self.kafka_heap_mb}: must be >= 256")
        if (self.kafka_ssl_port is None) != (self.kafka_ssl_keystore is None):
            raise ConfigError(
                f"{ENV_PREFIX}KAFKA_SSL_PORT and {ENV_PREFIX}KAFKA_SSL_KEYSTORE go together"
            )
        if self.kafka_ssl_keystore is not None and not self.kafka_ssl_keystore.is_file():
            raise ConfigError(
                f"{ENV_PREFIX}KAFKA_SSL_KEYSTORE={self.kafka_ssl_keystore}: no such file"
            )
        return self


class Secret:
    """A secret value: never shown by ``repr`` or ``str``; read it with ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How clients authenticate to Kafka: TLS (CA, optional client certificate)
    and/or SASL (PLAIN or SCRAM). Shared by the collector, workers and tools."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def validate(self) -> KafkaSecurity:
        if self.protocol not in KAFKA_PROTOCOLS:
            raise ConfigError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.protocol!r}: expected one of {', '.join(KAFKA_PROTOCOLS)}"
            )
        if self.protocol.startswith("SASL"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"{ENV_PREFIX}KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of {', '.join(SASL_MECHANISMS)}"
                )
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are required with {self.protocol}"
                )
        for name, path in (("SSL_CAFILE", self.ssl_cafile), ("SSL_CERTFILE", self.ssl_certfile),
                           ("SSL_KEYFILE", self.ssl_keyfile)):  # fmt: skip
            if path is not None and not path.is_file():
                raise ConfigError(f"{ENV_PREFIX}KAFKA_{name}={path}: no such file")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError(f"{ENV_PREFIX}KAFKA_SSL_CERTFILE and _KEYFILE go together")
        return self

    def ssl_context(self) -> Any:
        if not self.protocol.endswith("SSL"):
            return None
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            ctx.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return ctx

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol.endswith("SSL"):
            kw["ssl_context"] = self.ssl_context()
        if self.protocol.startswith("SASL"):
            kw |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                   "sasl_plain_password": self.sasl_password.reveal()}  # fmt: skip
        return kw

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for the Faust app (None for PLAINTEXT)."""
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password.reveal(),
            mechanism=self.sasl_mechanism,
            ssl_context=self.ssl_context(),
        )


def load_kafka_security(e: _Env) -> KafkaSecurity:
    def path(name: str) -> Path | None:
        raw = e.raw(name)
        return Path(raw).expanduser() if raw else None

    return KafkaSecurity(
        protocol=(e.raw("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
        sasl_mechanism=(e.raw("KAFKA_SASL_MECHANISM") or "PLAIN").upper(),
        sasl_username=e.raw("KAFKA_SASL_USERNAME") or "",
        sasl_password=Secret(e.raw("KAFKA_SASL_PASSWORD") or ""),
        ssl_cafile=path("KAFKA_SSL_CAFILE"),
        ssl_certfile=path("KAFKA_SSL_CERTFILE"),
        ssl_keyfile=path("KAFKA_SSL_KEYFILE"),
    ).validate()


@dataclass(frozen=True, slots=True)
class RedisAuth:
    """Redis ACL credentials (``AUTH username password``), kept out of the URL."""

    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))

    def client(self, url: str, **kw: Any) -> Any:
        import redis.asyncio as aioredis

        if self.username:
            kw["username"] = self.username
        if self.password:
            kw["password"] = self.password.reveal()
        return aioredis.from_url(url, **kw)


def redis_auth_from_env(env: Mapping[str, str] | None = None) -> RedisAuth:
    return load_redis_auth(_Env(os.environ if env is None else env))


def redis_from_env(env: Mapping[str, str] | None = None, **kw: Any) -> Any:
    """A Redis client for the CLI tools: ``DNSGUARD_REDIS_URL`` (else the local
    stack's) with the ACL credentials from the environment."""
    source = os.environ if env is None else env
    url = _Env(source).raw("REDIS_URL") or load_stack_settings(source).redis_url
    return redis_auth_from_env(source).client(url, **kw)


def load_redis_auth(e: _Env) -> RedisAuth:
    auth = RedisAuth(e.raw("REDIS_USERNAME") or "", Secret(e.raw("REDIS_PASSWORD") or ""))
    if auth.username and not auth.password:
        raise ConfigError(f"{ENV_PREFIX}REDIS_USERNAME needs {ENV_PREFIX}REDIS_PASSWORD")
    return auth


MIN_TOKEN_LEN = 16
INSECURE_HINT = (
    f"to run without authentication on purpose (a laboratory, never a cluster) set "
    f"{ENV_PREFIX}INSECURE=true"
)


def check_token(name: str, token: Secret) -> None:
    if token and len(token.reveal()) < MIN_TOKEN_LEN:
        raise ConfigError(
            f"{ENV_PREFIX}{name}: a bearer token of at least {MIN_TOKEN_LEN} characters"
        )


def load_namespace_tokens(folder: Path | None) -> tuple[tuple[str, Secret], ...]:
    """Per-namespace collector tokens: one file per namespace in ``folder``
    (a mounted Kubernetes Secret with one key per namespace), holding the token."""
    if folder is None:
        return ()
    from detectors.identity import valid_namespace

    if not folder.is_dir():
        raise ConfigError(f"{ENV_PREFIX}COLLECTOR_NAMESPACE_TOKENS_DIR={folder}: not a folder")
    out = []
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue  # Kubernetes keeps its own ..data links beside the keys
        if not valid_namespace(f.name):
            raise ConfigError(
                f"{ENV_PREFIX}COLLECTOR_NAMESPACE_TOKENS_DIR: {f.name!r} is not a namespace name"
            )
        token = Secret(f.read_text(encoding="utf-8").strip())
        check_token(f"COLLECTOR_NAMESPACE_TOKENS_DIR/{f.name}", token)
        if not token:
            raise ConfigError(f"{ENV_PREFIX}COLLECTOR_NAMESPACE_TOKENS_DIR/{f.name}: empty")
        out.append((f.name, token))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """The HTTP collector: where it listens, what it accepts, where events go."""

    host: str = "127.0.0.1"
    port: int = 18080
    path: str = "/v1/events"
    # a token that may send events of any namespace (egress gateways, node agents)
    token: Secret = field(default_factory=lambda: Secret(""))
    # tokens that may send events of one namespace only: (namespace, token)
    namespace_tokens: tuple[tuple[str, Secret], ...] = ()
    # no token at all: accept anything (logged at start, shown in metrics)
    insecure: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    max_events: int = 10_000
    sink: str = "kafka"  # "kafka" or "jsonl:PATH"
    kafka_bootstrap: str = "127.0.0.1:19092"
    events_topic: str = TOPICS.events
    dlq_topic: str = TOPICS.dlq
    linger_ms: int = 5
    # how long a record waits for other requests' records bound for its
    # partition, to travel as one (streams.ingest.bundles); 0: each alone
    bundle_ms: int = 20
    produce_timeout_s: float = 10.0
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def validate(self) -> CollectorSettings:
        check_token("COLLECTOR_TOKEN", self.token)
        if not self.insecure and not self.token and not self.namespace_tokens:
            raise ConfigError(
                f"{ENV_PREFIX}COLLECTOR_TOKEN (or {ENV_PREFIX}COLLECTOR_NAMESPACE_TOKENS_DIR) is "
                f"required: the collector refuses to start without authentication; {INSECURE_HINT}"
            )
        if not self.path.startswith("/"):
            raise ConfigError(f"{ENV_PREFIX}COLLECTOR_PATH={self.path!r}: must start with '/'")
        if not (self.sink == "kafka" or self.sink.startswith("jsonl:")):
            raise ConfigError(
                f"{ENV_PREFIX}COLLECTOR_SINK={self.sink!r}: expected 'kafka' or 'jsonl:PATH'"
            )
        if self.max_events < 1 or self.max_body_bytes < 1024:
            raise ConfigError("collector limits must be positive (max body >= 1 KiB)")
        if not 0 <= self.bundle_ms <= 1000:
            raise ConfigError(
                f"{ENV_PREFIX}COLLECTOR_BUNDLE_MS={self.bundle_ms}: expected 0..1000 (a request "
                "waits that long at most for its records' bundles)"
            )
        return self


def load_collector_settings(env: Mapping[str, str] | None = None) -> CollectorSettings:
    source = os.environ if env is None else env
    e = _Env(source)
    stack = load_stack_settings(source)
    dflt = _defaults(CollectorSettings)
    return CollectorSettings(
        host=e.raw("COLLECTOR_HOST") or dflt["host"],
        port=e.port("COLLECTOR_PORT", dflt["port"]),
        path=e.raw("COLLECTOR_PATH") or dflt["path"],
        token=Secret(e.secret_text("COLLECTOR_TOKEN") or ""),
        namespace_tokens=load_namespace_tokens(
            Path(d) if (d := e.raw("COLLECTOR_NAMESPACE_TOKENS_DIR")) else None
        ),
        insecure=e.boolean("INSECURE"),
        max_body_bytes=e.integer("COLLECTOR_MAX_BODY_BYTES", dflt["max_body_bytes"], minimum=1024),
        max_events=e.integer("COLLECTOR_MAX_EVENTS", dflt["max_events"], minimum=1),
        sink=e.raw("COLLECTOR_SINK") or dflt["sink"],
        bundle_ms=e.integer("COLLECTOR_BUNDLE_MS", dflt["bundle_ms"], minimum=0),
        kafka_bootstrap=e.raw("KAFKA_BOOTSTRAP") or stack.kafka_bootstrap,
        events_topic=e.raw("EVENTS_TOPIC") or TOPICS.events,
        dlq_topic=e.raw("DLQ_TOPIC") or TOPICS.dlq,
        kafka_security=load_kafka_security(e),
    ).validate()


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The Faust workers: Kafka, Redis, topics, batching and detector knobs."""

    app_id: str = "dnsguard-worker"
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    events_topic: str = TOPICS.events
    alerts_topic: str = TOPICS.alerts
    verdicts_topic: str = TOPICS.verdicts
    dlq_topic: str = TOPICS.dlq
    # records per Kafka fetch at most (each record a batch record of one client's events)
    batch_max: int = 200
    web_port: int = 16066  # Faust web server: /metrics (Prometheus), /clients/counts
    web_bind: str = "127.0.0.1"  # the address it listens on (0.0.0.0 in a pod)
    # the address other workers reach it at, to forward a client's counts to the
    # worker that holds them (a pod's IP); empty: the bind address
    web_host: str = ""
    data_dir: Path = Path("/tmp/dnsguard-worker")
    # DGA score levels; None: those calibrated with the model (models/MODEL_CARD.md)
    dga_evidence_threshold: float | None = None
    dga_block_threshold: float | None = None
    allowlist_file: Path | None = None  # CSV with a domain column (top-N popular)
    allowlist_top_n: int = 10_000
    shadow: bool = False
    redis_retries: int = 5
    alert_dedup_ttl_s: int = 7 * 86_400
    # How long the group waits for a silent worker before moving its partitions.
    session_timeout_s: int = 30
    # Faust's and the worker's log level: warning, or info to follow rebalances
    # and table recovery (partitions taken over, changelog offsets read)
    log_level: str = "warning"
    # Partitions of the per-client tables' changelogs: must equal the events
    # topic's (the worker reads it from Kafka at start).
    table_partitions: int = 6
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    redis_auth: RedisAuth = field(default_factory=RedisAuth)
    alert_format: str = "ocsf"  # or "ecs"
    # a detector verdict goes global only with findings from this many namespaces
    global_min_namespaces: int = 3
    cluster_domain: str = "cluster.local"
    search_domains: tuple[str, ...] = ()
    internal_zones: tuple[str, ...] = ()

    def validate(self) -> WorkerSettings:
        from detectors.zones import ClusterSettings

        try:
            ClusterSettings(self.cluster_domain, self.search_domains, self.internal_zones)
        except ValueError as exc:
            raise ConfigError(
                f"{ENV_PREFIX}CLUSTER_DOMAIN / SEARCH_DOMAINS / INTERNAL_ZONES: {exc}"
            ) from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"{ENV_PREFIX}WORKER_LOG_LEVEL={self.log_level!r}: one of {', '.join(LOG_LEVELS)}"
            )
        if self.alert_format not in ("ocsf", "ecs"):
            raise ConfigError(
                f"{ENV_PREFIX}ALERT_FORMAT={self.alert_format!r}: expected ocsf or ecs"
            )
        for key, value in (("DGA_EVIDENCE_THRESHOLD", self.dga_evidence_threshold),
                           ("DGA_BLOCK_THRESHOLD", self.dga_block_threshold)):  # fmt: skip
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"{ENV_PREFIX}{key}={value}: must be in (0, 1)")
        if self.batch_max < 1:
            raise ConfigError(f"{ENV_PREFIX}WORKER_BATCH_MAX={self.batch_max}: must be positive")
        if self.web_bind in ("0.0.0.0", "::") and not self.web_host:
            raise ConfigError(
                f"{ENV_PREFIX}WORKER_WEB_HOST is required with {ENV_PREFIX}WORKER_WEB_BIND="
                f"{self.web_bind}: other workers forward requests to that address"
            )
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"{ENV_PREFIX}REDIS_URL={self.redis_url!r}: expected redis://, rediss:// or unix://"
            )
        return self


def load_worker_settings(env: Mapping[str, str] | None = None) -> WorkerSettings:
    source = os.environ if env is None else env
    e = _Env(source)
    stack = load_stack_settings(source)
    thresholds: dict[str, float | None] = {}
    for key in ("DGA_EVIDENCE_THRESHOLD", "DGA_BLOCK_THRESHOLD"):
        raw = e.raw(key)
        try:
            thresholds[key] = float(raw) if raw else None
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}{key}={raw!r}: expected a number") from exc
    allow = e.raw("ALLOWLIST_FILE")
    dflt = _defaults(WorkerSettings)
    return WorkerSettings(
        app_id=e.raw("WORKER_APP_ID") or dflt["app_id"],
        kafka_bootstrap=e.raw("KAFKA_BOOTSTRAP") or stack.kafka_bootstrap,
        redis_url=e.raw("REDIS_URL") or stack.redis_url,
        events_topic=e.raw("EVENTS_TOPIC") or TOPICS.events,
        alerts_topic=e.raw("ALERTS_TOPIC") or TOPICS.alerts,
        verdicts_topic=e.raw("VERDICTS_TOPIC") or TOPICS.verdicts,
        dlq_topic=e.raw("DLQ_TOPIC") or TOPICS.dlq,
        batch_max=e.integer("WORKER_BATCH_MAX", dflt["batch_max"], minimum=1),
        web_port=e.port("WORKER_WEB_PORT", dflt["web_port"]),
        web_bind=e.raw("WORKER_WEB_BIND") or dflt["web_bind"],
        web_host=e.raw("WORKER_WEB_HOST") or dflt["web_host"],
        data_dir=e.path("WORKER_DATA_DIR", stack.state_dir / "worker"),
        dga_evidence_threshold=thresholds["DGA_EVIDENCE_THRESHOLD"],
        dga_block_threshold=thresholds["DGA_BLOCK_THRESHOLD"],
        allowlist_file=Path(allow) if allow else None,
        allowlist_top_n=e.integer("ALLOWLIST_TOP_N", dflt["allowlist_top_n"], minimum=0),
        shadow=e.boolean("SHADOW"),
        session_timeout_s=e.integer(
            "WORKER_SESSION_TIMEOUT_S", dflt["session_timeout_s"], minimum=6
        ),
        log_level=(e.raw("WORKER_LOG_LEVEL") or dflt["log_level"]).lower(),
        kafka_security=load_kafka_security(e),
        redis_auth=load_redis_auth(e),
        alert_format=(e.raw("ALERT_FORMAT") or dflt["alert_format"]).lower(),
        global_min_namespaces=e.integer(
            "GLOBAL_MIN_NAMESPACES", dflt["global_min_namespaces"], minimum=0
        ),
        cluster_domain=(e.raw("CLUSTER_DOMAIN") or dflt["cluster_domain"]).lower().rstrip("."),
        search_domains=e.names("SEARCH_DOMAINS"),
        internal_zones=e.names("INTERNAL_ZONES"),
    ).validate()


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The policy feed server: where it listens, who may read, how bodies are signed."""

    signing_key: SigningKey  # Ed25519; filters hold its public key
    host: str = "127.0.0.1"
    port: int = 18090
    path: str = "/v1/policy"
    token: Secret = field(default_factory=lambda: Secret(""))
    insecure: bool = False  # no token: anyone may read the policy
    redis_url: str = "redis://127.0.0.1:16379/0"
    max_bytes: int = 30 * 1024 * 1024  # Envoy drops dispatched-call responses of ~32 MB and more
    max_wait_ms: int = 30_000
    watch_interval_ms: int = 25
    prune_interval_s: float = 5.0
    redis_auth: RedisAuth = field(default_factory=RedisAuth)

    def validate(self) -> FeedSettings:
        check_token("FEED_TOKEN", self.token)
        if not self.insecure and not self.token:
            raise ConfigError(
                f"{ENV_PREFIX}FEED_TOKEN is required: the feed refuses to start without "
                f"authentication; {INSECURE_HINT}"
            )
        if not self.path.startswith("/"):
            raise ConfigError(f"{ENV_PREFIX}FEED_PATH={self.path!r}: must start with '/'")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"{ENV_PREFIX}REDIS_URL={self.redis_url!r}: expected redis://, rediss:// or unix://"
            )
        return self


def load_signing_key(e: _Env) -> SigningKey:
    raw = e.secret_text("FEED_SIGNING_KEY")
    if raw is None:
        raise ConfigError(
            f"{ENV_PREFIX}FEED_SIGNING_KEY (or {ENV_PREFIX}FEED_SIGNING_KEY_FILE) is required: "
            "<id>:<base64 Ed25519 seed>; `dnsguard keys new` makes one"
        )
    try:
        return SigningKey.parse(raw)
    except SigningError as exc:
        raise ConfigError(f"{ENV_PREFIX}FEED_SIGNING_KEY: {exc}") from None


def load_feed_settings(env: Mapping[str, str] | None = None) -> FeedSettings:
    source = os.environ if env is None else env
    e = _Env(source)
    stack = load_stack_settings(source)
    dflt = _defaults(FeedSettings)
    return FeedSettings(
        signing_key=load_signing_key(e),
        host=e.raw("FEED_HOST") or dflt["host"],
        port=e.port("FEED_PORT", dflt["port"]),
        path=e.raw("FEED_PATH") or dflt["path"],
        token=Secret(e.secret_text("FEED_TOKEN") or ""),
        insecure=e.boolean("INSECURE"),
        redis_url=e.raw("REDIS_URL") or stack.redis_url,
        max_bytes=e.integer("FEED_MAX_BYTES", dflt["max_bytes"], minimum=1024),
        max_wait_ms=e.integer("FEED_MAX_WAIT_MS", dflt["max_wait_ms"], minimum=0),
        redis_auth=load_redis_auth(e),
    ).validate()


def load_stack_settings(env: Mapping[str, str] | None = None) -> StackSettings:
    """Build :class:`StackSettings` from ``DNSGUARD_*`` environment variables."""
    source = os.environ if env is None else env
    e = _Env(source)
    keystore = e.raw("KAFKA_SSL_KEYSTORE")
    dflt = _defaults(StackSettings)
    return StackSettings(
        state_dir=e.path("STATE_DIR", default_state_dir(source)),
        cache_dir=e.path("CACHE_DIR", default_cache_dir(source)),
        kafka_port=e.port("KAFKA_PORT", dflt["kafka_port"]),
        kafka_controller_port=e.port("KAFKA_CONTROLLER_PORT", dflt["kafka_controller_port"]),
        kafka_heap_mb=e.integer("KAFKA_HEAP_MB", dflt["kafka_heap_mb"]),
        redis_port=e.port("REDIS_PORT", dflt["redis_port"]),
        redis_maxmemory_mb=e.integer("REDIS_MAXMEMORY_MB", dflt["redis_maxmemory_mb"], minimum=16),
        envoy_admin_port=e.port("ENVOY_ADMIN_PORT", dflt["envoy_admin_port"]),
        ready_timeout_s=float(e.integer("READY_TIMEOUT_S", 90, minimum=1)),
        kafka_sasl_port=e.port("KAFKA_SASL_PORT", dflt["kafka_sasl_port"])
        if e.raw("KAFKA_SASL_PORT")
        else None,
        kafka_sasl_users=(
            ((e.raw("KAFKA_SASL_USERNAME") or "", Secret(e.raw("KAFKA_SASL_PASSWORD") or "")),)
            if e.raw("KAFKA_SASL_PORT")
            else ()
        ),
        kafka_ssl_port=e.port("KAFKA_SSL_PORT", dflt["kafka_ssl_port"])
        if e.raw("KAFKA_SSL_PORT")
        else None,
        kafka_ssl_keystore=Path(keystore).expanduser() if keystore else None,
    ).validate()
