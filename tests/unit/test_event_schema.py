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


def _resolve(schema: dict, node: dict) -> dict:
    """A msgspec schema node with ``$ref`` followed and a nullable ``anyOf`` opened."""
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            return _resolve(schema, options[0])
    return node


def _constraints(node: dict) -> dict:
    keys = ("type", "maxLength", "pattern", "minimum", "maximum", "maxItems")
    out = {k: node[k] for k in keys if k in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in node:
        out["enum"] = sorted(node["enum"])
    if isinstance(out.get("type"), list):  # ["integer", "null"]: nullability is checked apart
        out["type"] = next(t for t in out["type"] if t != "null")
    return out


def _nullable(node: dict) -> bool:
    t = node.get("type")
    return (isinstance(t, list) and "null" in t) or any(
        o.get("type") == "null" for o in node.get("anyOf", node.get("oneOf", []))
    )


# Constraints the decoder's types leave to ``validate()`` on purpose, which
# checks more than the schema can say and names what is wrong (a name's
# characters, label and name lengths): the schema's pattern is implied by it.
LEFT_TO_VALIDATE = {"event.query.name": "pattern"}


def test_the_published_schema_and_the_decoders_types_are_one_contract() -> None:
    """Every object of the published JSON Schema has exactly the fields, required
    fields, nullability and constraints of the msgspec types the collector decodes
    with: a field added, dropped or constrained in one and not the other fails."""
    import msgspec

    from streams.ingest.events import SCHEMA_PATH, Event

    published = json.loads(SCHEMA_PATH.read_text())
    derived = msgspec.json.schema(Event)

    def compare(pub: dict, der: dict, path: str) -> None:
        der = _resolve(derived, der)
        if pub.get("type") == "object" or "properties" in pub:
            assert set(pub["properties"]) == set(der["properties"]), path
            assert sorted(pub.get("required", [])) == sorted(der.get("required", [])), path
            assert pub.get("additionalProperties") is False, path
            assert der.get("additionalProperties") is False, path
            for name, sub in pub["properties"].items():
                raw = der["properties"][name]
                assert _nullable(sub) == _nullable(raw), f"{path}.{name}: nullability"
                compare(sub, raw, f"{path}.{name}")
            return
        if pub.get("type") == "array" or (
            isinstance(pub.get("type"), list) and "array" in pub["type"]
        ):
            assert pub.get("maxItems") == der.get("maxItems"), path
            compare(pub["items"], der["items"], f"{path}[]")
            return
        options = [o for o in pub.get("anyOf", pub.get("oneOf", [])) if o.get("type") != "null"]
        if options:
            compare(options[0], der, path)
            return
        pub_c, der_c = _constraints(pub), _constraints(der)
        if path in LEFT_TO_VALIDATE:
            pub_c.pop(LEFT_TO_VALIDATE[path])
        assert pub_c == der_c, path

    compare(published, derived, "event")
