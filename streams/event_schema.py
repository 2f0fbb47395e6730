"""The v1 event contract as msgspec types: a fast, typed decoder for the collector.

Mirrors ``streams/schemas/dns-event-v1.schema.json`` (the published JSON
Schema); ``tests/unit/test_event_schema.py`` checks both agree on valid and
invalid samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from detectors.events import client_identity

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "dns-event-v1.schema.json"

U16 = Annotated[int, msgspec.Meta(ge=0, le=65535)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=4294967295)]
Str16 = Annotated[str, msgspec.Meta(max_length=16)]
Str253 = Annotated[str, msgspec.Meta(max_length=253)]
Str512 = Annotated[str, msgspec.Meta(max_length=512)]
Ts = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$")
]


class Node(msgspec.Struct, forbid_unknown_fields=True):
    id: Str512
    cluster: Str512
    namespace: Str253
    workload: Str253
    pod: Str253
    service_account: Str253


class Client(msgspec.Struct, forbid_unknown_fields=True):
    ip: Annotated[str, msgspec.Meta(max_length=64)]
    port: U16
    peer: Annotated[str, msgspec.Meta(max_length=1024)] | msgspec.UnsetType = msgspec.UNSET


class Query(msgspec.Struct, forbid_unknown_fields=True, rename={"do_": "do", "class_": "class"}):
    id: U16
    name: Annotated[str, msgspec.Meta(max_length=1024)]
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


class Event(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[1]
    ts: Ts
    node: Node
    client: Client
    transport: Literal["tcp", "dot", "doh"]
    query: Query
    response: Response | None
    latency_us: Annotated[int, msgspec.Meta(ge=0)] | None
    action: Literal["allowed", "blocked", "shadow"]
    policy_version: Annotated[int, msgspec.Meta(ge=0)]

    def client_key(self) -> str:
        """Kafka key: the client identity the worker keys its per-client state by."""
        n = self.node
        return client_identity(n.namespace, n.pod, n.workload, self.client.ip)


event_decoder = msgspec.json.Decoder(Event)
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
encoder = msgspec.json.Encoder()
