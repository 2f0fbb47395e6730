r"""The v2 event batch: one capture point's events with its identity once.

A v1 event repeats the node (about 200 of its 700 bytes) and the client in
every event and spells every field's name. A v2 batch says who once and
writes each event as a fixed-order array::

    {"v": 2,
     "node": {"id": ..., "cluster": ..., "namespace": ..., "workload": ..., "pod": ...,
              "service_account": ...},
     "clients": [{"ip": "10.1.0.11", "port": 40512}, ...],
     "events": [[ts_us, client, transport, id, name, type, class, qflags,
                 response, observed, latency_us, action, policy_version], ...]}

* ``ts_us``: microseconds since the epoch (UTC) when the query was seen;
* ``client``: an index into ``clients`` (the connection's peer; ``peer`` is
  the TLS identity where one was presented);
* ``qflags``: bit 0 RD, bit 1 CD, bit 2 DO;
* ``response``: ``null`` (unanswered, or not observed), or ``[rcode, rflags
  (bit 0 AA, bit 1 TC, bit 2 RA, bit 3 AD), min_ttl, [[name, type, ttl,
  data], ...]]``;
* ``observed``: ``false`` where the capture path cannot see responses (DNS
  over UDP through the Envoy module); ``response`` is then ``null`` and means
  "not observed", never "unanswered".

The filters ship v2 in ``POST /v1/events``; the collector also takes a JSON
array of v1 events and turns it into v2. A record of Kafka ``dnsguard.events``
is a v2 batch of the client keys (``detectors.events.client_identity``:
``namespace/pod``, else the client IP) of one request that share a partition,
keyed by one of them, so each client's events stay on its partition, or a
bundle of such batches from several requests (``streams.ingest.bundles``). The
published JSON Schema (``schemas/dns-batch-v2.schema.json``) is generated from the types below
(``python -m streams.ingest.batch > .../dns-batch-v2.schema.json``) and a test
fails if the two drift. Extra trailing elements of an event array or unknown
object fields are refused: what the collector validated is exactly what the
worker reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from detectors.events import EventError, check_identity, client_identity, query_name, utc_second
from streams.ingest.events import U16, U32, DnsName, IpText, Node, Str16, decode_as

SCHEMA_V2_PATH = Path(__file__).resolve().parent / "schemas" / "dns-batch-v2.schema.json"
MAX_CLIENTS = 4096
MAX_EVENTS = 10_000
MAX_ANSWERS = 256

# qflags and rflags bits
RD, CD, DO = 1, 2, 4
AA, TC, RA, AD = 1, 2, 4, 8

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Transport = Literal["udp", "tcp", "dot", "doh"]
EventAction = Literal["allowed", "blocked", "shadow"]


class Client(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """The peer of a connection (or datagram) the batch's events came from."""

    ip: IpText
    port: U16 = 0
    peer: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class Answer(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    name: Annotated[str, msgspec.Meta(max_length=1024)]
    type: Str16
    ttl: U32
    data: Annotated[str, msgspec.Meta(max_length=65535)]


class Response(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    rcode: Str16
    flags: Annotated[int, msgspec.Meta(ge=0, le=15)]
    min_ttl: U32 | None
    answers: Annotated[list[Answer], msgspec.Meta(max_length=MAX_ANSWERS)]


class Event(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    ts_us: NonNegative
    client: Annotated[int, msgspec.Meta(ge=0, lt=MAX_CLIENTS)]
    transport: Transport
    id: U16
    name: DnsName
    type: Str16
    qclass: Str16
    qflags: Annotated[int, msgspec.Meta(ge=0, le=7)]
    response: Response | None
    observed: bool
    latency_us: NonNegative | None
    action: EventAction
    policy_version: NonNegative


class Batch(msgspec.Struct, forbid_unknown_fields=True, tag_field="v", tag=2):
    """A v2 batch (the ``v`` field is its tag: ``2``)."""

    node: Node
    clients: Annotated[list[Client], msgspec.Meta(min_length=1, max_length=MAX_CLIENTS)]
    events: Annotated[list[Event], msgspec.Meta(min_length=1, max_length=MAX_EVENTS)]

    def key_of(self, client: int) -> str:
        """The client key (Kafka key, per-client state key) of events from ``clients[client]``."""
        n = self.node
        return client_identity(n.namespace, n.pod, n.workload, self.clients[client].ip)

    def check_identity(self) -> None:
        """The node's and every client's identity fields; :class:`EventError` says which."""
        n = self.node
        for c in self.clients:
            check_identity(n.namespace, n.pod, n.workload, c.ip)

    def check_event(self, ev: Event) -> None:
        """What the types cannot say about one event; :class:`EventError` with the field."""
        if ev.client >= len(self.clients):
            raise EventError(f"client: index {ev.client} of {len(self.clients)} clients")
        query_name(ev.name)
        if not ev.observed and ev.response is not None:
            raise EventError("response: must be null when observed is false")


class _Frame(msgspec.Struct, forbid_unknown_fields=True, tag_field="v", tag=2):
    """A v2 batch whose events are read one by one (after the fast path failed)."""

    node: Node
    clients: Annotated[list[Client], msgspec.Meta(min_length=1, max_length=MAX_CLIENTS)]
    events: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_EVENTS)]


batch_decoder = msgspec.json.Decoder(Batch)
_frame_decoder = msgspec.json.Decoder(_Frame)
_event_decoder = msgspec.json.Decoder(Event)
encoder = msgspec.json.Encoder()


def decode_batch_v2(body: bytes) -> Batch:
    """A v2 batch by its types (events not yet checked one by one:
    :meth:`Batch.check_event`); :class:`EventError` says what is wrong."""
    return decode_as(batch_decoder, body)


def read_batch(body: bytes) -> tuple[Batch, list[tuple[bytes, str]]]:
    """A v2 request body: the batch of its events that decode, and each event
    that does not (its bytes and why). One bad event costs only itself; a
    body whose node, clients or framing is wrong raises :class:`EventError`."""
    try:
        return decode_batch_v2(body), []
    except EventError as whole:
        try:
            frame = _frame_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise whole from None
        except UnicodeDecodeError as exc:
            raise EventError(f"invalid UTF-8 at byte {exc.start}") from exc
    good: list[Event] = []
    bad: list[tuple[bytes, str]] = []
    for raw in frame.events:
        data = bytes(raw)
        try:
            good.append(_event_decoder.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad.append((data, str(exc)))
        except (UnicodeDecodeError, RecursionError) as exc:
            bad.append((data, f"event: {type(exc).__name__}"))
    return Batch(frame.node, frame.clients, good), bad


def single(batch: Batch, ev: Event) -> Batch:
    """``ev`` as a batch of its own, with its client (for a dead letter)."""
    if ev.client < len(batch.clients):
        return Batch(
            batch.node, [batch.clients[ev.client]], [msgspec.structs.replace(ev, client=0)]
        )
    return Batch(batch.node, batch.clients, [ev])


def split_by_client(batch: Batch) -> Iterator[tuple[str, Batch]]:
    """One batch per client key, each with only the clients its events name
    (re-indexed), events in the order given."""
    return split_by(batch, lambda key: key)


def split_by(batch: Batch, group: Callable[[str], Hashable]) -> Iterator[tuple[str, Batch]]:
    """One batch per ``group`` of the client keys (in order of first
    appearance), keyed by the group's first client key, each with only the
    clients its events name (re-indexed), events in the order given."""
    keys = [batch.key_of(i) for i in range(len(batch.clients))]
    groups_of = [group(k) for k in keys]
    if len(set(groups_of)) <= 1:
        if keys:
            yield keys[0], batch
        return
    groups: dict[Hashable, tuple[str, dict[int, int], list[Client], list[Event]]] = {}
    for ev in batch.events:
        first, index, clients, events = groups.setdefault(
            groups_of[ev.client], (keys[ev.client], {}, [], [])
        )
        at = index.get(ev.client)
        if at is None:
            at = index[ev.client] = len(clients)
            clients.append(batch.clients[ev.client])
        events.append(msgspec.structs.replace(ev, client=at))
    for first, _, clients, events in groups.values():
        yield first, Batch(batch.node, clients, events)


def chunks(batch: Batch, max_events: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The batch encoded as one or more v2 batches of at most ``max_events``
    events and about ``max_bytes`` each (a single event is never split), each
    with its number of events."""
    encoded = encoder.encode(batch)
    if len(batch.events) <= max_events and len(encoded) <= max_bytes:
        yield len(batch.events), encoded
        return
    per_event = max(1, len(encoded) // len(batch.events))
    step = max(1, min(max_events, max_bytes // per_event))
    for start in range(0, len(batch.events), step):
        events = batch.events[start : start + step]
        yield len(events), encoder.encode(Batch(batch.node, batch.clients, events))


def from_v1(events: list[Any]) -> Batch:
    """v1 events (``streams.ingest.events.Event``, all of one node) as one v2 batch."""
    clients: dict[tuple[str, int, str | None], int] = {}
    out: list[Event] = []
    for e in events:
        peer = e.client.peer if isinstance(e.client.peer, str) else None
        ckey = (e.client.ip, e.client.port, peer)
        idx = clients.setdefault(ckey, len(clients))
        ts_us = utc_second(e.ts[:19]) * 1_000_000 + int(e.ts[20:26])  # the type fixed its form
        q = e.query
        r = e.response
        response = None
        if r is not None:
            response = Response(
                r.rcode,
                AA * r.aa | TC * r.tc | RA * r.ra | AD * r.ad,
                r.min_ttl,
                [Answer(a.name, a.type, a.ttl, a.data) for a in r.answers],
            )
        observed = e.response_observed if isinstance(e.response_observed, bool) else True
        out.append(
            Event(
                ts_us,
                idx,
                e.transport,
                q.id,
                q.name,
                q.type,
                q.class_,
                RD * q.rd | CD * q.cd | DO * q.do_,
                response,
                observed or r is not None,
                e.latency_us,
                e.action,
                e.policy_version,
            )
        )
    return Batch(events[0].node, [Client(ip, port, peer) for ip, port, peer in clients], out)


def to_v1(batch: Batch) -> list[dict[str, Any]]:
    """The batch's events as v1 event objects (``dns-event-v1.schema.json``):
    for tools and reports that read events one by one."""
    from datetime import UTC, datetime

    node = msgspec.structs.asdict(batch.node)
    clients = [msgspec.to_builtins(c) for c in batch.clients]
    for c in clients:
        c.setdefault("port", 0)
    out: list[dict[str, Any]] = []
    for e in batch.events:
        seconds, micros = divmod(e.ts_us, 1_000_000)
        ts = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        r = e.response
        doc: dict[str, Any] = {
            "v": 1,
            "ts": f"{ts}.{micros:06d}Z",
            "node": node,
            "client": clients[e.client],
            "transport": e.transport,
            "query": {"id": e.id, "name": e.name, "type": e.type, "class": e.qclass,
                      "rd": bool(e.qflags & RD), "cd": bool(e.qflags & CD),
                      "do": bool(e.qflags & DO)},
            "response": None if r is None else {
                "rcode": r.rcode, "aa": bool(r.flags & AA), "tc": bool(r.flags & TC),
                "ra": bool(r.flags & RA), "ad": bool(r.flags & AD),
                "answers": [msgspec.structs.asdict(a) for a in r.answers], "min_ttl": r.min_ttl,
            },
            "latency_us": e.latency_us,
            "action": e.action,
            "policy_version": e.policy_version,
        }  # fmt: skip
        if not e.observed:
            doc["response_observed"] = False
        out.append(doc)
    return out


# what each element of the array-like types means, for the published schema
FIELD_DOCS: dict[str, dict[str, str]] = {
    "Event": {
        "ts_us": "when the query was seen: microseconds since the epoch, UTC",
        "client": "index into the batch's clients",
        "transport": "how the query came",
        "id": "DNS transaction id",
        "name": "query name in presentation form, lower-case, no trailing dot (as in v1); "
        "a name that is not a valid DNS name is dead-lettered (detectors/dnsname.py)",
        "type": "query type (A, AAAA, TYPE65, ...)",
        "qclass": "query class (IN, ...)",
        "qflags": "bit 0 RD, bit 1 CD, bit 2 DO",
        "response": "null (unanswered, or not observed), or the response",
        "observed": "false where the capture path cannot see responses (DNS over UDP through "
        "the Envoy module); response is then null and means 'not observed'",
        "latency_us": "query to response, microseconds; null without a response",
        "action": "what the filter did",
        "policy_version": "the policy version the filter decided under",
    },
    "Response": {
        "rcode": "response code (NOERROR, NXDOMAIN, ...)",
        "flags": "bit 0 AA, bit 1 TC, bit 2 RA, bit 3 AD",
        "min_ttl": "the lowest TTL of the answers, null without answers",
        "answers": "the answer section",
    },
    "Answer": {
        "name": "owner name",
        "type": "record type",
        "ttl": "TTL in seconds",
        "data": "record data in presentation form",
    },
}


def schema() -> dict[str, Any]:
    """The published JSON Schema of a v2 batch, generated from the types."""
    _, defs = msgspec.json.schema_components([Batch], ref_template="#/$defs/{name}")
    root = defs.pop("Batch")
    root.pop("title", None)
    root.pop("description", None)
    for name, docs in FIELD_DOCS.items():
        fields = list(
            {"Event": Event, "Response": Response, "Answer": Answer}[name].__struct_fields__
        )
        if list(docs) != fields:
            raise RuntimeError(f"FIELD_DOCS[{name!r}] does not list {name}'s fields in order")
        for item, field_name in zip(defs[name]["prefixItems"], fields, strict=True):
            item["title"] = field_name
            item["description"] = docs[field_name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dnsguard.dev/schemas/dns-batch-v2.schema.json",
        "title": "dnsguard DNS event batch, version 2",
        "description": (
            "One capture point's DNS events, its identity once, each event a fixed-order "
            "array (see streams/ingest/batch.py). Generated from the collector's types: "
            "python -m streams.ingest.batch"
        ),
        **root,
        "$defs": defs,
    }


def main() -> None:
    sys.stdout.write(json.dumps(schema(), indent=2) + "\n")


if __name__ == "__main__":
    main()
