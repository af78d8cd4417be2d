"""The clock services read time from: the real one, and the virtual one that jumps to the next
timer when the event loop has nothing left to run."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from backend.runtime.clock import REAL_CLOCK, RealClock, VirtualClock, from_us, to_us

START_US = to_us(from_us(1_767_225_600_000_000))  # 2026-01-01 00:00 UTC
DAY_S = 86_400


async def test_sleeps_wake_in_the_order_of_their_deadlines():
    clock = VirtualClock(START_US)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.elapsed_s))

    await asyncio.gather(sleeper("c", 30), sleeper("a", 10), sleeper("b", 20), sleeper("a2", 10))
    assert woke == [("a", 10), ("a2", 10), ("b", 20), ("c", 30)]
    assert clock.now_us() == START_US + 30_000_000
    assert clock.monotonic() == pytest.approx(START_US / 1e6 + 30)
    assert clock.now() == from_us(START_US + 30_000_000)


async def test_call_later_runs_callbacks_at_their_time_and_cancel_stops_one():
    clock = VirtualClock(START_US)
    fired: list[tuple[str, float]] = []
    clock.call_later(5, lambda: fired.append(("five", clock.elapsed_s)))
    dropped = clock.call_later(3, lambda: fired.append(("three", clock.elapsed_s)))
    clock.call_later(1, fired.append, ("one", 1.0))
    dropped.cancel()
    await clock.sleep(10)
    assert fired == [("one", 1.0), ("five", 5.0)]
    assert clock.elapsed_s == 10


async def test_time_does_not_move_while_the_loop_has_work():
    """A busy task that never waits on the clock keeps it still; time jumps once it is done."""
    clock = VirtualClock(START_US)
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(200):
            seen.append(clock.elapsed_s)
            await asyncio.sleep(0)  # yields, but stays ready: the loop is never idle

    sleeper = asyncio.create_task(clock.sleep(60))
    await busy()
    assert set(seen) == {0.0}
    await sleeper
    assert clock.elapsed_s == 60


async def test_a_day_of_one_minute_ticks_runs_in_well_under_a_second():
    clock = VirtualClock(START_US)
    ticks: list[int] = []

    async def every_minute() -> None:
        while True:
            await clock.sleep(60)
            ticks.append(clock.now_us())

    t0 = time.perf_counter()
    task = asyncio.create_task(every_minute())
    await clock.sleep(DAY_S + 30)  # past the last tick, which shares its instant with nothing
    wall = time.perf_counter() - t0
    task.cancel()
    assert len(ticks) == 1440
    assert ticks[0] == START_US + 60_000_000
    assert ticks[-1] == START_US + DAY_S * 1_000_000
    assert clock.elapsed_s == DAY_S + 30
    assert wall < 5  # a generous bound: it takes about a tenth of a second


async def test_wait_for_times_out_on_virtual_time_and_cancels_the_awaitable():
    clock = VirtualClock(START_US)
    never = asyncio.Event()
    waiter = asyncio.ensure_future(never.wait())
    with pytest.raises(TimeoutError):
        await clock.wait_for(waiter, 300)
    assert clock.elapsed_s == 300
    assert waiter.cancelled()
    assert await clock.wait_for(_after(clock, 5, "done"), 10) == "done"
    assert clock.elapsed_s == 305
    assert await clock.wait_for(_after(clock, 1, "no limit"), None) == "no limit"


async def test_a_cancelled_sleep_leaves_no_timer_that_moves_time():
    clock = VirtualClock(START_US)
    long = asyncio.create_task(clock.sleep(3_600))
    await asyncio.sleep(0)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    await clock.sleep(1)
    assert clock.elapsed_s == 1  # the hour-long timer was dropped, not jumped to


async def test_work_in_a_thread_holds_time_until_it_answers():
    """A database call in a thread leaves the loop idle; time must not run ahead meanwhile."""
    clock = VirtualClock(START_US)

    async def ticker() -> None:
        while True:
            await clock.sleep(1)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    answered_at = await loop.run_in_executor(None, lambda: (time.sleep(0.05), clock.now_us())[1])
    assert answered_at == START_US and clock.elapsed_s == 0
    await clock.sleep(10)
    assert clock.elapsed_s == 10
    ticking.cancel()


async def test_a_thread_that_takes_too_long_lets_time_move_on():
    clock = VirtualClock(START_US, settle_s=0.02)
    done = threading.Event()

    async def call_in_thread() -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: done.wait(5))

    waiting = asyncio.create_task(call_in_thread())
    t0 = time.perf_counter()
    await clock.sleep(600)  # the task waiting on the thread holds time for settle_s only
    held_s = time.perf_counter() - t0
    done.set()
    assert await waiting is True
    assert clock.elapsed_s == 600 and 0.02 <= held_s < 4


async def test_a_reader_of_a_queue_nobody_fills_does_not_hold_time():
    clock = VirtualClock(START_US, settle_s=30)  # were it held, the test would take 30 s
    queue: asyncio.Queue[int] = asyncio.Queue()
    event = asyncio.Event()
    readers = [asyncio.create_task(queue.get()), asyncio.create_task(event.wait())]
    t0 = time.perf_counter()
    await clock.sleep(3_600)
    assert clock.elapsed_s == 3_600 and time.perf_counter() - t0 < 5
    for r in readers:
        r.cancel()


async def test_the_real_clock_reads_the_wall_and_sleeps_for_real():
    clock = RealClock()
    before = time.time_ns() // 1000
    assert abs(clock.now_us() - before) < 5_000_000
    m0 = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() - m0 >= 0.009
    fired = asyncio.Event()
    clock.call_later(0.01, fired.set)
    await clock.wait_for(fired.wait(), 5)
    with pytest.raises(TimeoutError):
        await REAL_CLOCK.wait_for(asyncio.Event().wait(), 0.01)
    assert not REAL_CLOCK.virtual and VirtualClock().virtual


async def _after(clock: VirtualClock, seconds: float, value: str) -> str:
    await clock.sleep(seconds)
    return value


async def test_time_stands_still_while_held_and_moves_on_after():
    clock = VirtualClock(START_US)
    sleeper = asyncio.create_task(clock.sleep(60))
    fired = asyncio.Event()
    with clock.hold():
        clock.call_later(0, fired.set)  # due now: fires even while held
        await clock.wait_for(fired.wait(), 1)
        for _ in range(50):
            await asyncio.sleep(0.001)  # the loop idles, for real: time still stands
        assert clock.elapsed_s == 0 and not sleeper.done()
    await sleeper
    assert clock.elapsed_s == 60


async def test_a_cancel_at_the_instant_a_wait_for_times_out_still_cancels():
    """A supervisor's stop can land at the very instant a loop's wait_for times out: the loop must
    end, not take the cancellation for its own timeout and go on napping forever."""
    clock = VirtualClock(0)
    never = asyncio.Event()

    async def napper() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await clock.wait_for(never.wait(), 5)

    task = asyncio.create_task(napper())
    await clock.sleep(5)  # wakes at the instant the napper's timeout fires
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)  # real seconds: the napper would spin in virtual time
    assert done and task.cancelled()
