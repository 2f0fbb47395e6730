r"""The v1 event contract as msgspec types: a fast, typed decoder for the collector.

Mirrors ``streams/ingest/schemas/dns-event-v1.schema.json`` (the published JSON
Schema); ``tests/unit/test_event_schema.py`` checks both agree on valid and
invalid samples.

Types check shapes and characters; :func:`validate` then checks what a type
cannot say (a DNS name's label and name lengths, an IP address) with the
same rules the detectors use (``detectors.dnsname``, ``detectors.identity``).
Patterns end in ``(?![\s\S])`` rather than ``$``, which in Python also
matches before a final newline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

from detectors.events import EventError, check_identity, client_identity, query_name

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "dns-event-v1.schema.json"

U16 = Annotated[int, msgspec.Meta(ge=0, le=65535)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=4294967295)]
Str16 = Annotated[str, msgspec.Meta(max_length=16)]
END = r"(?![\s\S])"  # the end of the string, in Python and ECMA-262 regular expressions
_K8S_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
# empty, or a Kubernetes namespace name (DNS-1123 label)
Namespace = Annotated[str, msgspec.Meta(max_length=63, pattern=rf"^(?:{_K8S_LABEL})?{END}")]
# empty, or a Kubernetes object name (DNS-1123 subdomain)
ObjectName = Annotated[
    str, msgspec.Meta(max_length=253, pattern=rf"^(?:{_K8S_LABEL}(?:\.{_K8S_LABEL})*)?{END}")
]
# printable ASCII, no spaces (Envoy node ids and cluster names)
Token = Annotated[str, msgspec.Meta(max_length=512, pattern=rf"^[!-~]*{END}")]
# a DNS name in presentation form; validate() checks it (and says what is wrong)
DnsName = Annotated[str, msgspec.Meta(max_length=1024)]
IpText = Annotated[str, msgspec.Meta(max_length=64, pattern=rf"^[0-9A-Fa-f:.]*{END}")]
Ts = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z(?![\s\S])"
    ),
]

T = TypeVar("T")


class Node(msgspec.Struct, forbid_unknown_fields=True):
    id: Token
    cluster: Token
    namespace: Namespace
    workload: ObjectName
    pod: ObjectName
    service_account: ObjectName


class Client(msgspec.Struct, forbid_unknown_fields=True):
    ip: IpText
    port: U16
    peer: Annotated[str, msgspec.Meta(max_length=1024)] | msgspec.UnsetType = msgspec.UNSET


class Query(msgspec.Struct, forbid_unknown_fields=True, rename={"do_": "do", "class_": "class"}):
    id: U16
    name: DnsName
    type: Str16
    class_: Str16
    rd: bool
    cd: bool
    do_: bool


class Answer(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=1024)]
    type: Str16
    ttl: U32
    data: Annotated[str, msgspec.Meta(max_length=65535)]


class Response(msgspec.Struct, forbid_unknown_fields=True):
    rcode: Str16
    aa: bool
    tc: bool
    ra: bool
    ad: bool
    answers: Annotated[list[Answer], msgspec.Meta(max_length=256)]
    min_ttl: U32 | None


class Event(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    v: Literal[1]
    ts: Ts
    node: Node
    client: Client
    transport: Literal["udp", "tcp", "dot", "doh"]
    query: Query
    response: Response | None
    response_observed: bool | msgspec.UnsetType = msgspec.UNSET
    latency_us: Annotated[int, msgspec.Meta(ge=0)] | None
    action: Literal["allowed", "blocked", "shadow"]
    policy_version: Annotated[int, msgspec.Meta(ge=0)]

    def client_key(self) -> str:
        """Kafka key: the client identity the worker keys its per-client state by."""
        n = self.node
        return client_identity(n.namespace, n.pod, n.workload, self.client.ip)

    def validate(self) -> None:
        """What the types cannot check; raises :class:`EventError` with the field."""
        n = self.node
        check_identity(n.namespace, n.pod, n.workload, self.client.ip)
        query_name(self.query.name)


event_decoder = msgspec.json.Decoder(Event)
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
encoder = msgspec.json.Encoder()

# a JSON string, or one structural character
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


class NotAnArray(ValueError):
    """A body that is not a JSON array."""


def split_array(body: bytes) -> list[bytes]:
    """The elements of a JSON array as raw bytes, however deeply each is nested.

    ``raw_list_decoder`` is the fast path; it gives up on an element nested
    deeper than its recursion limit, and with it on the whole batch. This
    scanner only tracks depth (iteratively) and cuts the array at its
    top-level commas, so the other events of the batch survive; each element
    is then decoded on its own, and the deep one is dead-lettered.
    """
    text = body.strip()
    if not text.startswith(b"[") or not text.endswith(b"]"):
        raise NotAnArray("body must be a JSON array of events")
    items: list[bytes] = []
    depth = 0
    start = 1
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok[0] == 0x22:  # a string: skipped whole
            continue
        if tok in (b"[", b"{"):
            depth += 1
        elif tok in (b"]", b"}"):
            depth -= 1
            if depth < 0:
                raise NotAnArray("unbalanced brackets")
            if depth == 0:
                if m.end() != len(text):
                    raise NotAnArray("data after the array")
                last = text[start : m.start()].strip()
                if last:
                    items.append(last)
                elif items:
                    raise NotAnArray("a trailing comma")
        elif depth == 1:  # a comma between events
            items.append(text[start : m.start()].strip())
            start = m.end()
    if depth != 0:
        raise NotAnArray("unbalanced brackets")
    if any(not item for item in items):
        raise NotAnArray("an empty element")
    return items


def decode_batch(body: bytes) -> list[bytes]:
    """A body's events as raw JSON bytes, or :class:`NotAnArray`."""
    try:
        return [bytes(raw) for raw in raw_list_decoder.decode(body)]
    except RecursionError:
        return split_array(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotAnArray(f"body must be a JSON array of events: {exc}") from exc


def decode_as(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """``data`` decoded by a typed decoder, its errors as :class:`EventError`
    (the one translation of msgspec's errors for every event format)."""
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EventError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise EventError(f"invalid UTF-8 at byte {exc.start}") from exc
    except RecursionError as exc:
        raise EventError("nested too deeply") from exc


def decode_event(data: bytes) -> Event:
    """One event, decoded and validated; :class:`EventError` says what is wrong."""
    ev = decode_as(event_decoder, data)
    ev.validate()
    return ev
