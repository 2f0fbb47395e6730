"""Bytes of a v1 event to the :class:`DnsEvent` detectors read, fast.

``detectors.events.from_v1`` is the definition: it decodes a parsed dict and
says which field is at fault. Parsing JSON into dicts and walking them costs
about 17 us an event, more than all detectors together, so the worker first
tries a msgspec decoder typed with just the fields detectors use (unknown
fields skipped, about 3 us). Anything that decoder does not take in its
plain form goes through ``from_v1`` unchanged, so the result, or the error
and its message, is always the one ``from_v1`` gives.

:func:`decode_record` reads a record of the events topic: a batch record (a
JSON array of v1 events, what the collector writes) decoded in one call, or
a single v1 event (what older producers and tests write).
"""

from __future__ import annotations

import functools
import json
from typing import Literal

import msgspec

from detectors.events import (
    Answer,
    DnsEvent,
    EventError,
    check_identity,
    client_identity,
    from_v1,
    parse_ts,
    query_name,
)


class _Node(msgspec.Struct, gc=False):
    namespace: str = ""
    pod: str = ""
    workload: str = ""


class _Client(msgspec.Struct, gc=False):
    ip: str = ""


class _Query(msgspec.Struct, gc=False):
    name: str
    type: str


class _Answer(msgspec.Struct, gc=False):
    type: str
    ttl: int
    data: str


class _Response(msgspec.Struct, gc=False):
    rcode: str
    answers: list[_Answer] = []


class _Event(msgspec.Struct, gc=False):
    v: Literal[1]
    ts: str
    node: _Node
    client: _Client
    query: _Query
    response: _Response | None = None
    response_observed: bool = True
    action: str = "allowed"


_decoder = msgspec.json.Decoder(_Event)
_batch_decoder = msgspec.json.Decoder(list[_Event])
_raw_items = msgspec.json.Decoder(list[msgspec.Raw])

Rejected = tuple[bytes, Exception]  # an event's bytes and why it was not taken


def decode_event(raw: bytes | str) -> DnsEvent:
    """Decode one v1 event; raises ``EventError`` or ``ValueError`` as ``from_v1`` does."""
    try:
        e = _decoder.decode(raw)
    except msgspec.DecodeError:
        return from_v1(json.loads(raw))  # the reference path: same result or same error
    return _from_struct(e)


def decode_record(raw: bytes) -> tuple[list[DnsEvent], list[Rejected]]:
    """The events of one record of the events topic, and those that could not
    be taken (each with its own bytes and the error): one bad event costs
    only itself."""
    if raw.lstrip()[:1] != b"[":
        try:
            return [decode_event(raw)], []
        except (EventError, ValueError, TypeError) as exc:
            return [], [(raw, exc)]
    events: list[DnsEvent] = []
    rejected: list[Rejected] = []
    try:
        structs = _batch_decoder.decode(raw)  # the fast path: the whole array at once
    except (msgspec.DecodeError, RecursionError):
        try:
            items = [bytes(r) for r in _raw_items.decode(raw)]
        except (msgspec.DecodeError, RecursionError):
            return [], [(raw, ValueError("not a JSON array of v1 events"))]
        if not items:
            return [], [(raw, ValueError("an empty batch record"))]
        for item in items:
            try:
                events.append(decode_event(item))
            except (EventError, ValueError, TypeError) as exc:
                rejected.append((item, exc))
        return events, rejected
    if not structs:
        return [], [(raw, ValueError("an empty batch record"))]
    for e in structs:
        try:
            events.append(_from_struct(e))
        except (EventError, ValueError, TypeError) as exc:
            rejected.append((msgspec.json.encode(e), exc))
    return events, rejected


@functools.lru_cache(maxsize=1 << 16)
def _client(namespace: str, pod: str, workload: str, ip: str) -> str:
    """The checked identity's client key. A client sends many events: the
    checks (four name and address validations) run once per identity, in a
    bounded cache; an identity that fails is not cached and fails every time."""
    check_identity(namespace, pod, workload, ip)
    return client_identity(namespace, pod, workload, ip)


def _from_struct(e: _Event) -> DnsEvent:
    node = e.node
    r = e.response
    return DnsEvent(
        parse_ts(e.ts),
        _client(node.namespace, node.pod, node.workload, e.client.ip),
        node.namespace,
        query_name(e.query.name),
        e.query.type.upper(),
        None if r is None else r.rcode,
        tuple([Answer(a.type, a.ttl, a.data) for a in r.answers]) if r and r.answers else (),
        e.action or "allowed",
        e.response_observed,
    )
