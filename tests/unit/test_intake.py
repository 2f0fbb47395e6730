"""The worker's intake between its Faust stream and its batch loop: bounds,
batching by count, bytes and time, backpressure, and the reader's end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streams.engine.intake import Intake, IntakeClosed


def intake(max_items: int = 100, max_bytes: int = 1 << 20) -> Intake[bytes]:
    return Intake(max_items, max_bytes, len)


def test_a_batch_is_the_oldest_items_up_to_the_count() -> None:
    async def run() -> list[bytes]:
        box = intake()
        for i in range(5):
            await box.put(b"%d" % i)
        return await box.take(3, 1 << 20, within=10)

    assert asyncio.run(run()) == [b"0", b"1", b"2"]


def test_a_batch_stops_at_the_byte_bound_but_holds_at_least_one_item() -> None:
    async def run() -> tuple[list[bytes], list[bytes], int]:
        box = intake(max_bytes=2000)
        await box.put(b"x" * 900)
        await box.put(b"y" * 300)
        first = await box.take(10, 500, within=0)  # one item over the batch bound
        second = await box.take(10, 500, within=0)
        return first, second, box.bytes

    first, second, left = asyncio.run(run())
    assert first == [b"x" * 900]
    assert second == [b"y" * 300]
    assert left == 0


def test_take_waits_within_for_a_full_batch_then_takes_what_is_there() -> None:
    async def run() -> tuple[list[bytes], float]:
        box = intake()
        await box.put(b"a")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        batch = await box.take(10, 1 << 20, within=0.05)
        return batch, loop.time() - t0

    batch, waited = asyncio.run(run())
    assert batch == [b"a"]
    assert 0.04 <= waited < 1.0


def test_take_returns_as_soon_as_the_batch_is_full() -> None:
    async def run() -> tuple[list[bytes], float]:
        box = intake()
        loop = asyncio.get_running_loop()

        async def feed() -> None:
            for i in range(4):
                await box.put(b"%d" % i)
                await asyncio.sleep(0.001)

        t0 = loop.time()
        feeder = asyncio.ensure_future(feed())
        batch = await box.take(4, 1 << 20, within=30)
        await feeder
        return batch, loop.time() - t0

    batch, waited = asyncio.run(run())
    assert batch == [b"0", b"1", b"2", b"3"]
    assert waited < 5


def test_a_full_intake_makes_the_reader_wait_until_a_batch_is_taken() -> None:
    async def run() -> tuple[bool, bool, int]:
        box = intake(max_items=2)
        await box.put(b"a")
        await box.put(b"b")
        third = asyncio.ensure_future(box.put(b"c"))
        await asyncio.sleep(0.02)
        blocked = not third.done()
        await box.take(1, 1 << 20, within=0)
        await asyncio.wait_for(third, 1)
        return blocked, third.done(), len(box)

    blocked, admitted, held = asyncio.run(run())
    assert blocked
    assert admitted
    assert held == 2


def test_the_byte_bound_applies_but_an_oversized_item_enters_an_empty_intake() -> None:
    async def run() -> tuple[bool, list[bytes]]:
        box = intake(max_bytes=100)
        await box.put(b"z" * 500)  # bigger than the bound: admitted, the intake was empty
        second = asyncio.ensure_future(box.put(b"q"))
        await asyncio.sleep(0.02)
        blocked = not second.done()
        first = await box.take(10, 1 << 20, within=0)
        await asyncio.wait_for(second, 1)
        return blocked, first

    blocked, first = asyncio.run(run())
    assert blocked
    assert first == [b"z" * 500]


def test_when_the_reader_ends_what_is_left_is_handed_out_then_take_raises() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def run() -> tuple[list[bytes], BaseException | None]:
        box = intake()
        await box.fill(source())
        got = await box.take(10, 1 << 20, within=30)  # closed: no waiting for more
        with pytest.raises(IntakeClosed) as closed:
            await box.take(10, 1 << 20, within=30)
        return got, closed.value.__cause__

    got, cause = asyncio.run(run())
    assert got == [b"a", b"b"]
    assert isinstance(cause, EOFError)


def test_a_failing_reader_wakes_a_waiting_batch_loop_with_its_error() -> None:
    async def source() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.01)
        raise RuntimeError("the stream broke")
        yield b""  # an async generator

    async def run() -> BaseException | None:
        box = intake()
        reader = asyncio.ensure_future(box.fill(source()))
        with pytest.raises(IntakeClosed) as closed:
            await asyncio.wait_for(box.take(10, 1 << 20, within=30), 5)
        with pytest.raises(RuntimeError):
            await reader
        return closed.value.__cause__

    cause = asyncio.run(run())
    assert isinstance(cause, RuntimeError)


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Intake(0, 10, len)
    with pytest.raises(ValueError, match="at least one"):
        Intake(10, 0, len)


def test_the_window_counts_from_the_oldest_items_arrival() -> None:
    """Items that have waited ``within`` already (the batch loop was busy with
    the last batch) are taken at once; a fresh one waits the rest of its
    window, not a whole window from the call."""

    async def run() -> tuple[float, float]:
        box = intake()
        loop = asyncio.get_running_loop()
        await box.put(b"a")
        await asyncio.sleep(0.3)  # the loop was busy meanwhile
        t0 = loop.time()
        assert await box.take(10, 1 << 20, within=0.2) == [b"a"]
        waited_old = loop.time() - t0
        await box.put(b"b")
        await asyncio.sleep(0.1)
        t0 = loop.time()
        assert await box.take(10, 1 << 20, within=0.3) == [b"b"]
        return waited_old, loop.time() - t0

    waited_old, waited_fresh = asyncio.run(run())
    assert waited_old < 0.05
    assert 0.1 <= waited_fresh < 0.28
