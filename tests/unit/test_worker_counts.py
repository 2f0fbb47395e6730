"""The per-client minute counts the worker keeps in its changelog-backed table."""

from __future__ import annotations

from streams.engine.worker import COUNT_KEEP_S, add_count


def test_counts_add_up_per_minute_and_keep_one_hour() -> None:
    m = add_count(None, 600, 3)
    m = add_count(m, 600, 2)
    m = add_count(m, 660, 1)
    assert m == [[600, 5], [660, 1]]
    m = add_count(m, 540, 4)  # a late record's minute goes where it belongs
    assert m == [[540, 4], [600, 5], [660, 1]]
    m = add_count(m, 600 + COUNT_KEEP_S, 1)  # an hour on: the oldest minutes are gone
    assert m == [[660, 1], [600 + COUNT_KEEP_S, 1]]


def test_a_client_entry_is_bounded() -> None:
    m = None
    for minute in range(0, 10 * COUNT_KEEP_S, 60):
        m = add_count(m, minute, 1)
    assert m is not None
    assert len(m) == COUNT_KEEP_S // 60
