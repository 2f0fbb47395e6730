"""The worker's fast event decoder gives exactly what ``from_v1`` gives: the same
event, or the same error with the same message."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import EventError, from_v1, parse_ts
from streams.ingest.decode import decode_event
from streams.ingest.events import event_decoder
from streams.sim.workloads import Simulator
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


def fromisoformat_ts(value: str) -> Any:
    """``parse_ts``'s general path: what every accepted string must agree with."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return EventError


def parse_or_error(value: str) -> Any:
    try:
        return parse_ts(value)
    except EventError:
        return EventError


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_filter_timestamps_parse_as_fromisoformat_does(moment: datetime) -> None:
    """The filter's ``...T..:..:...ffffffZ`` form takes a cached fast path; its result
    is bit-for-bit the general path's."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(text) == 27
    assert parse_ts(text) == fromisoformat_ts(text) == moment.timestamp()


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    st.integers(0, 18),
    st.sampled_from("0123456789-:T .Z+zt\u0663"),
    st.text(alphabet="0123456789\u0663a ", min_size=6, max_size=6),
)
def test_fast_path_shaped_strings_agree_with_fromisoformat(
    moment: datetime, at: int, char: str, micros: str
) -> None:
    """A string of the fast path's shape (one character of a valid second possibly
    changed, any six characters for the microseconds) is accepted or refused as
    the general path would."""
    head = moment.strftime("%Y-%m-%dT%H:%M:%S")
    head = head[:at] + char + head[at + 1 :]
    text = f"{head}.{micros}Z"
    assert parse_or_error(text) == fromisoformat_ts(text)


def test_fast_path_edges() -> None:
    for text in (
        "2026-11-25T12:00:00.000000Z",
        "2026-11-25T23:59:59.999999Z",
        "2026-11-25 12:00:00.123456Z",
        "2026-11-25T12:00:60.000000Z",  # no leap seconds: refused by both
        "2026-02-30T12:00:00.000000Z",
        "2026-11-25T12:00:00.12345\u0663Z",  # a non-ASCII digit
        "2000-01-01T00:00.00.000000Z",  # its first 19 characters alone would parse
        "2000-01-01Z00:00:00.000000Z",  # likewise (any date-time separator)
    ):
        assert parse_or_error(text) == fromisoformat_ts(text), text
