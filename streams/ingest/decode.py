"""Bytes of a v1 event to the :class:`DnsEvent` detectors read, fast.

``detectors.events.from_v1`` is the definition: it decodes a parsed dict and
says which field is at fault. Parsing JSON into dicts and walking them costs
about 17 us an event, more than all detectors together, so the worker first
tries a msgspec decoder typed with just the fields detectors use (unknown
fields skipped, about 3 us). Anything that decoder does not take in its
plain form goes through ``from_v1`` unchanged, so the result, or the error
and its message, is always the one ``from_v1`` gives.

:func:`decode_record` reads a record of the events topic: a v2 batch (the
events of client keys of one partition: ``streams.ingest.batch``), a bundle
of them (a JSON array of v2 batches, what the collector writes when several
requests' batches share a partition: ``streams.ingest.bundles``), a JSON
array of v1 events (what earlier collectors wrote), or a single v1 event
(what older producers and tests write). A v2 batch or bundle is decoded in
one call, its identities checked once per client, not once per event.

The worker reads v2 by types that check what it uses again (the client's
identity: namespace, pod, workload, IP; each query name) and take the node
fields it does not read (id, cluster, service account) as plain strings:
the collector's patterns on them cost more than the rest of decoding a
sidecar's batch of a few events (measured: 4.6 against 2.0 us an event in
bundles of sidecars' batches).
"""

from __future__ import annotations

import functools
import json
from typing import Literal, NamedTuple

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
from streams.ingest import batch as v2
from streams.ingest.events import Node


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


class _V2Node(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str = ""
    cluster: str = ""
    namespace: str = ""
    workload: str = ""
    pod: str = ""
    service_account: str = ""


class _V2Client(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    ip: str
    port: int = 0
    peer: str | None = None


class _V2Batch(msgspec.Struct, forbid_unknown_fields=True, tag_field="v", tag=2):
    """A v2 batch as the worker reads it (``v2.Batch`` without the patterns on
    fields the worker checks itself or does not read)."""

    node: _V2Node
    clients: list[_V2Client]
    events: list[v2.Event]


_v2_decoder = msgspec.json.Decoder(_V2Batch)
_bundle_decoder = msgspec.json.Decoder(list[_V2Batch])


class Rejected(NamedTuple):
    """An event (or a whole record) that could not be taken, and why."""

    raw: bytes
    error: Exception
    position: int | None = None  # its place in the record; None for the whole record


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
    head = raw.lstrip()[:1]
    if head == b"{":
        try:
            return decode_v2(_v2_decoder.decode(raw))
        except (msgspec.DecodeError, RecursionError):
            pass  # not a v2 batch: a single v1 event, or neither
        except UnicodeDecodeError as exc:
            return [], [Rejected(raw, ValueError(f"invalid UTF-8 at byte {exc.start}"))]
    if head != b"[":
        try:
            return [decode_event(raw)], []
        except (EventError, ValueError, TypeError) as exc:
            return [], [Rejected(raw, exc)]
    events: list[DnsEvent] = []
    rejected: list[Rejected] = []
    try:
        bundle = _bundle_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        bundle = []  # v1 events, or something to read item by item below
    if bundle:
        offset = 0  # a rejected event's place: its index among the bundle's events
        for b in bundle:
            good, bad = decode_v2(b)
            rejected += [r._replace(position=offset + (r.position or 0)) for r in bad]
            events += good
            offset += len(b.events)
        return events, rejected
    try:
        structs = _batch_decoder.decode(raw)  # the fast path: the whole array at once
    except (msgspec.DecodeError, RecursionError):
        try:
            items = [bytes(r) for r in _raw_items.decode(raw)]
        except (msgspec.DecodeError, RecursionError):
            return [], [Rejected(raw, ValueError("not a JSON array of v1 events"))]
        if not items:
            return [], [Rejected(raw, ValueError("an empty batch record"))]
        for i, item in enumerate(items):
            if item.lstrip()[:1] == b"{":  # a v2 batch of a bundle, or a v1 event
                good, bad = decode_record(item)
                rejected += [r._replace(position=i) for r in bad]
                events += good
                continue
            try:
                events.append(decode_event(item))
            except (EventError, ValueError, TypeError) as exc:
                rejected.append(Rejected(item, exc, i))
        return events, rejected
    if not structs:
        return [], [Rejected(raw, ValueError("an empty batch record"))]
    for i, e in enumerate(structs):
        try:
            events.append(_from_struct(e))
        except (EventError, ValueError, TypeError) as exc:
            rejected.append(Rejected(msgspec.json.encode(e), exc, i))
    return events, rejected


def decode_v2(b: _V2Batch) -> tuple[list[DnsEvent], list[Rejected]]:
    """A decoded v2 batch as detector events: each client's identity checked
    once; an event whose client or name fails is rejected alone."""
    n = b.node
    keys: list[str | Exception] = []
    for c in b.clients:
        try:
            keys.append(_client(n.namespace, n.pod, n.workload, c.ip))
        except EventError as exc:
            keys.append(exc)
    events: list[DnsEvent] = []
    rejected: list[Rejected] = []
    nclients = len(keys)
    for i, e in enumerate(b.events):
        try:
            if e.client >= nclients:
                raise EventError(f"client: index {e.client} of {nclients} clients")
            key = keys[e.client]
            if isinstance(key, Exception):
                raise key
            r = e.response
            events.append(
                DnsEvent(
                    e.ts_us / 1e6,
                    key,
                    n.namespace,
                    _canonical(e.name),
                    e.type.upper(),
                    None if r is None else r.rcode,
                    tuple(r.answers) if r is not None and r.answers else (),
                    e.action,
                    e.observed,
                )
            )
        except EventError as exc:
            rejected.append(Rejected(_single(b, e), exc, i))
    return events, rejected


def _single(b: _V2Batch, e: v2.Event) -> bytes:
    """``e`` as a v2 batch of its own, with its client (a dead letter)."""
    n = b.node
    node = Node(n.id, n.cluster, n.namespace, n.workload, n.pod, n.service_account)
    clients = [v2.Client(c.ip, c.port, c.peer) for c in b.clients]
    return v2.encoder.encode(v2.single(v2.Batch(node, clients, b.events), e))


# ``query_name`` kept while names recur (a cluster asks for the same names again
# and again); a name that fails raises and is not kept, so it fails every time
_canonical = functools.lru_cache(maxsize=1 << 16)(query_name)


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
