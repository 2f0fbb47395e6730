"""The worker's fast event decoder gives exactly what ``from_v1`` gives: the same
event, or the same error with the same message."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import EventError, from_v1
from streams.event_schema import event_decoder
from streams.simulate import Simulator
from streams.worker.decode import decode_event
from tests.unit.test_collector import event as collector_event
from tests.unit.test_event_schema import with_field

pytestmark = pytest.mark.unit


def reference(raw: bytes) -> Any:
    try:
        return from_v1(json.loads(raw))
    except (EventError, ValueError, TypeError) as exc:
        return type(exc), str(exc)


def fast(raw: bytes) -> Any:
    try:
        return decode_event(raw)
    except (EventError, ValueError, TypeError) as exc:
        return type(exc), str(exc)


def simulated(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in Simulator(seed=3).events(time.time() - 600, 600):
        out.append(e)
        if len(out) >= n:
            break
    return out


def test_simulated_traffic_decodes_identically() -> None:
    events = simulated(3000)
    for e in events:
        raw = json.dumps(e).encode()
        assert fast(raw) == reference(raw)
    assert {fast(json.dumps(e).encode()).rcode for e in events} >= {"NOERROR", "NXDOMAIN"}


BASE = simulated(50)
ANSWERED = next(e for e in BASE if e["response"] and e["response"]["answers"])
PATHS: list[tuple[str | int, ...]] = [
    ("v",), ("ts",), ("node",), ("node", "namespace"), ("node", "pod"), ("node", "workload"),
    ("client",), ("client", "ip"), ("query",), ("query", "name"), ("query", "type"),
    ("response",), ("response", "rcode"), ("response", "answers"),
    ("response", "answers", 0), ("response", "answers", 0, "ttl"),
    ("response", "answers", 0, "type"), ("response", "answers", 0, "data"), ("action",),
]  # fmt: skip
VALUES = st.one_of(
    st.just(KeyError), st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["", "A", "NXDOMAIN", "2026-11-25T12:00:00Z", "1"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PATHS), VALUES, st.sampled_from(["answered", "any"]))
def test_mutated_events_decode_or_fail_identically(
    path: tuple[str | int, ...], value: Any, which: str
) -> None:
    event = ANSWERED if which == "answered" else BASE[7]
    try:
        mutated = with_field(event, path, value)
    except (KeyError, IndexError, TypeError):
        return  # the path does not exist in this event
    raw = json.dumps(mutated).encode()
    assert fast(raw) == reference(raw)


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[]", b"null", b"\xff\xfe", b'{"v": 1}', b'{"v": 1, "ts": 5}']
)
def test_garbage_fails_as_the_reference_does(raw: bytes) -> None:
    assert fast(raw) == reference(raw)
    assert isinstance(fast(raw), tuple)  # an error, never an event


@pytest.mark.parametrize(
    ("path", "value"),
    [(("response", "answers", 0, "ttl"), float("inf")), (("ts",), float("nan")),
     (("ts",), 10**400), (("ts",), True)],
)  # fmt: skip
def test_non_finite_and_oversized_numbers_are_event_errors(
    path: tuple[str | int, ...], value: Any
) -> None:
    raw = json.dumps(
        with_field(ANSWERED, path, value)
    ).encode()  # Infinity/NaN: Python's JSON extension
    result = fast(raw)
    assert result == reference(raw)
    assert isinstance(result, tuple)
    assert result[0] is EventError


@pytest.mark.parametrize(
    ("pod", "workload", "namespace", "identity"),
    [("web-1", "web", "shop", "shop/web-1"), ("", "gateway", "edge", "edge/gateway"),
     ("", "", "edge", "10.1.2.3"), ("web-1", "web", "", "web-1")],
)  # fmt: skip
def test_collector_key_and_worker_identity_agree(
    pod: str, workload: str, namespace: str, identity: str
) -> None:
    """The worker's per-client state is co-partitioned with the records only if
    the collector keys each record by the identity the worker computes."""
    ev = collector_event()
    ev["node"].update(pod=pod, workload=workload, namespace=namespace)
    ev["client"]["ip"] = "10.1.2.3"
    raw = json.dumps(ev).encode()
    assert event_decoder.decode(raw).client_key() == identity
    assert decode_event(raw).client == identity
