"""The published JSON Schema and the collector's typed decoder agree."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import jsonschema
import pytest

from detectors.events import EventError
from streams.ingest.events import SCHEMA_PATH, decode_event
from tests.unit.test_collector import event

pytestmark = pytest.mark.unit
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def with_field(event: dict[str, Any], path: Sequence[str | int], value: Any) -> dict[str, Any]:
    """A copy of ``event`` with the field at ``path`` set to ``value`` (removed for KeyError)."""
    ev = copy.deepcopy(event)
    target: Any = ev
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return ev


def mutate(path: list[str | int], value: Any) -> dict[str, Any]:
    return with_field(event(), path, value)


CASES = [
    (event(), True),
    (mutate(["response"], None), True),
    (mutate(["client", "peer"], "spiffe://cluster.local/ns/shop/sa/web"), True),
    (mutate(["transport"], "udp"), True),
    (mutate(["transport"], "sctp"), False),
    (mutate(["v"], 2), False),
    (mutate(["ts"], "2026-11-25 12:00:00"), False),
    (mutate(["query", "id"], 70000), False),
    (mutate(["query", "name"], KeyError), False),
    (mutate(["node", "extra"], "x"), False),
    (mutate(["response", "answers"], [{"name": "a", "type": "A", "ttl": -1, "data": "x"}]), False),
    (mutate(["action"], "dropped"), False),
    (mutate(["latency_us"], -5), False),
    (mutate(["node", "namespace"], "shop\n"), False),
    (mutate(["node", "namespace"], "Shop"), False),
    (mutate(["node", "pod"], "web 1"), False),
    (mutate(["node", "id"], "a b"), False),
    (mutate(["client", "ip"], "10.0.0.1\n"), False),
    (mutate(["query", "name"], "a\tb.example.com"), False),
    (mutate(["query", "name"], "a b.example.com"), False),
    (mutate(["ts"], "2026-11-25T12:00:00.000001Z\n"), False),
    (mutate(["node", "namespace"], ""), True),
    (mutate(["query", "name"], "a\\032b.example.com"), True),
]


@pytest.mark.parametrize(("ev", "valid"), CASES)
def test_schema_and_decoder_agree(ev: dict[str, Any], valid: bool) -> None:
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(ev)
    try:
        decode_event(json.dumps(ev).encode())
        decoder_ok = True
    except EventError:
        decoder_ok = False
    assert (schema_ok, decoder_ok) == (valid, valid)
