"""The slice of a v1 DNS event that detectors read, decoded from a plain dict.

Decoding is strict about what detectors rely on and lenient about the rest:
``from_v1`` raises :class:`EventError` with the field at fault, so the stream
engine can dead-letter the message with a reason.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import msgspec

from detectors.dnsname import InvalidName, canonical_name
from detectors.identity import valid_ip, valid_namespace, valid_object_name


class EventError(ValueError):
    """A v1 event lacks a field detectors need, or has it in the wrong shape."""


class AnswerRecord(Protocol):
    """What detectors read of an answer record: an :class:`Answer`, or the
    collector's v2 answer as the worker decodes it (taken as it is)."""

    @property
    def type(self) -> str: ...
    @property
    def ttl(self) -> int: ...
    @property
    def data(self) -> str: ...


class Answer(NamedTuple):
    type: str  # the record type: A, AAAA, CNAME, ...
    ttl: int
    data: str


# A msgspec struct without garbage-collector tracking: the worker builds one
# per event (three times faster than a slots dataclass), and tracked objects by
# the hundred thousand make every collection pass longer. An event holds only
# strings, numbers and tuples of them, so it cannot be part of a cycle. Not
# frozen (a frozen struct is no faster to read); nothing writes to an event
# after it is decoded.
class DnsEvent(msgspec.Struct, gc=False):
    ts: float  # seconds since the epoch
    client: str  # stable client identity: namespace/pod, else the client IP
    namespace: str
    qname: str  # canonical presentation form (detectors.dnsname)
    qtype: str
    rcode: str | None  # None when the query went unanswered, or its answer was not seen
    answers: tuple[AnswerRecord, ...] = ()
    action: str = "allowed"
    # False where the capture path sees queries only (the UDP module): rcode is
    # then None without meaning "unanswered", and the outcome is unknown
    observed: bool = True


_FILTER_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)


@functools.lru_cache(maxsize=4096)
def utc_second(prefix: str) -> int:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` in UTC (events of one batch share a few)."""
    return int(datetime.fromisoformat(prefix + "+00:00").timestamp())


def parse_ts(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            ts = float(value)
        except OverflowError:
            ts = math.inf
        if not math.isfinite(ts):
            raise EventError(f"ts: not a finite number: {value!r}")
        return ts
    if not isinstance(value, str):
        raise EventError("ts: expected an RFC 3339 string")
    # The form the filter writes, ``2026-01-02T03:04:05.123456Z``: the second from
    # a cache, the microseconds added exactly as datetime.timestamp() would. Only
    # exactly that form: fromisoformat also reads prefixes such as
    # ``2000-01-01T00:00.00`` or ``2000-01-01Z00:00:00`` that the whole string is not.
    if len(value) == 27 and _FILTER_TS.fullmatch(value):
        try:
            return (utc_second(value[:19]) * 1_000_000 + int(value[20:26])) / 1_000_000
        except ValueError as exc:
            raise EventError(f"ts: not RFC 3339: {value!r}") from exc
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise EventError(f"ts: not RFC 3339: {value!r}") from exc


def _obj(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    if not isinstance(value, Mapping):
        raise EventError(f"{key}: expected an object")
    return value


def client_identity(namespace: str, pod: str, workload: str, ip: str) -> str:
    """Who asked: ``namespace/pod`` (the workload when there is no pod), else the
    client IP. The collector keys Kafka records by it and the worker keys its
    per-client state by it, so both must compute it here."""
    who = pod or workload
    if who:
        return f"{namespace}/{who}" if namespace else who
    return ip or "unknown"


def check_identity(namespace: str, pod: str, workload: str, ip: str) -> None:
    """Raise :class:`EventError` unless the identity fields are well-formed:
    Kubernetes names (or empty) and an IP address (or empty). They become
    Kafka keys, policy scopes and alert fields downstream."""
    if namespace and not valid_namespace(namespace):
        raise EventError(f"node.namespace: not a Kubernetes namespace name: {namespace[:80]!r}")
    for field_name, value in (("node.pod", pod), ("node.workload", workload)):
        if value and not valid_object_name(value):
            raise EventError(f"{field_name}: not a Kubernetes object name: {value[:80]!r}")
    if ip and not valid_ip(ip):
        raise EventError(f"client.ip: not an IP address: {ip[:80]!r}")


def query_name(name: str) -> str:
    """The query name in canonical form, or :class:`EventError` saying why not."""
    try:
        return canonical_name(name)
    except InvalidName as exc:
        raise EventError(f"query.name: {exc}") from exc


def from_v1(event: Mapping[str, Any]) -> DnsEvent:
    """Decode the fields detectors use from a v1 event dict."""
    if not isinstance(event, Mapping):
        raise EventError(f"event: expected an object, got {type(event).__name__}")
    if event.get("v") != 1:
        raise EventError(f"v: expected 1, got {event.get('v')!r}")
    node = _obj(event, "node")
    client = _obj(event, "client")
    query = _obj(event, "query")
    name = query.get("name")
    if not isinstance(name, str):
        raise EventError("query.name: expected a string")
    qtype = query.get("type")
    if not isinstance(qtype, str):
        raise EventError("query.type: expected a string")
    response = event.get("response")
    observed = event.get("response_observed", True)
    if not isinstance(observed, bool):
        raise EventError("response_observed: expected a boolean")
    rcode: str | None = None
    answers: tuple[Answer, ...] = ()
    if response is not None:
        if not isinstance(response, Mapping):
            raise EventError("response: expected an object or null")
        rc = response.get("rcode")
        if not isinstance(rc, str):
            raise EventError("response.rcode: expected a string")
        rcode = rc
        raw_answers = response.get("answers") or []
        if not isinstance(raw_answers, list):
            raise EventError("response.answers: expected a list")
        try:
            answers = tuple(
                Answer(str(a["type"]), int(a["ttl"]), str(a["data"])) for a in raw_answers
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise EventError(f"response.answers: malformed answer ({exc})") from exc
    namespace = str(node.get("namespace") or "")
    pod = str(node.get("pod") or "")
    workload = str(node.get("workload") or "")
    ip = str(client.get("ip") or "")
    check_identity(namespace, pod, workload, ip)
    return DnsEvent(
        ts=parse_ts(event.get("ts")),
        client=client_identity(namespace, pod, workload, ip),
        namespace=namespace,
        qname=query_name(name),
        qtype=qtype.upper(),
        rcode=rcode,
        answers=answers,
        action=str(event.get("action") or "allowed"),
        observed=observed or response is not None,
    )
