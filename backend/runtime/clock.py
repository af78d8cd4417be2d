"""Time, read through one Clock so that a simulation can drive the production code.

Two ways to read it:
- `now_us()` (module level): UTC microseconds since the Unix epoch, what the ledger stores; the
  real clock's reading (or the fixed one, see set_fixed_clock). Code that is not a service may use it.
- A `Clock`, handed to every service (`clock=`; Services.start builds one RealClock): services read
  and wait on time only through it, so a VirtualClock can run a day of their loops in a second.

The Clock API (what services and the supervisor may rely on):
    clock.now_us() -> int            UTC microseconds since the epoch
    clock.now() -> datetime          the same, as an aware UTC datetime
    clock.monotonic() -> float       seconds, for intervals and deadlines (never goes back)
    await clock.sleep(seconds)       sleep(0) just yields to the loop
    clock.call_later(delay, callback, *args) -> handle with .cancel(); the callback runs on the loop
    await clock.wait_for(awaitable, timeout_s) -> its result; TimeoutError (and the awaitable
                                     cancelled) when `timeout_s` seconds pass first; None waits
    clock.virtual -> bool            True for a VirtualClock

Only this module may call time.time, time.monotonic, datetime.now or asyncio.sleep in backend/
(tests/unit/test_clock_discipline.py checks it). Timeouts that guard real I/O inside a library
(aiohttp's, uvicorn's) stay real; scheduling belongs to the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Set only by set_fixed_clock(): deterministic data (screenshots of the console, demos) needs every
# timestamp the backend writes to be known in advance.
_fixed: int | None = None


def now_us() -> int:
    return time.time_ns() // 1_000 if _fixed is None else _fixed


def set_fixed_clock(us: int | None) -> None:
    """Make now_us() return `us` until called again; None goes back to the real clock."""
    global _fixed
    _fixed = us


def from_us(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


def to_us(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: tokenmill keeps time in UTC, give a timezone")
    return int(when.timestamp() * 1_000_000)


def stopwatch() -> Callable[[], float]:
    """Real seconds since this call, for saying how long something took (a simulation's wall time),
    never for scheduling: that is the Clock's."""
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """What a service reads time from and waits on. See the module docstring for the API."""

    virtual = False

    def now_us(self) -> int:
        raise NotImplementedError

    def now(self) -> dt.datetime:
        return from_us(self.now_us())

    def monotonic(self) -> float:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        raise NotImplementedError

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        """asyncio.wait_for on this clock's timers."""
        if timeout_s is None:
            return await aw
        fut = asyncio.ensure_future(aw)
        if fut.done():
            return fut.result()
        expired = False

        def expire() -> None:
            nonlocal expired
            if not fut.done():
                expired = True
                fut.cancel()

        timer = self.call_later(timeout_s, expire)
        try:
            return await fut
        except asyncio.CancelledError:
            # Our own timeout, unless this task is itself being cancelled at the same instant (a
            # stop): turning that into TimeoutError would swallow the cancellation.
            task = asyncio.current_task()
            if expired and not (task is not None and task.cancelling()):
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()


class RealClock(Clock):
    """The wall clock and the running loop's timers: what production runs on."""

    def __init__(self) -> None:
        # Instance attributes bound to the C functions: the request path reads the clock per request.
        self.monotonic = time.monotonic  # type: ignore[method-assign]
        self.now_us = now_us  # type: ignore[method-assign]

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        return await asyncio.wait_for(aw, timeout_s)


REAL_CLOCK = RealClock()  # the default for services built without a clock (tests, tools)


class VirtualTimer:
    __slots__ = ("args", "callback", "cancelled", "when_us")

    def __init__(self, when_us: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when_us = when_us
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock(Clock):
    """Simulated time that moves only when the event loop has nothing left to run.

    Every sleep, timer and wait_for timeout on this clock waits in its own heap. When the loop is
    idle (no callback ready, twice in a row, with a poll of the sockets between), time jumps to the
    earliest timer and fires it (and any due at the same instant), so a day of 1-minute loops
    takes as long as the code those loops run. Like `looptime`'s fast-forwarding, but only for
    this clock's timers: the loop's own timers (a library's socket timeout) stay real.

    Work the loop does not run (a database call in a thread, a real socket) leaves it idle too.
    So that such a call does not let minutes pass in a millisecond, a task that began waiting on
    a plain future (what a thread or a socket answers through) holds time back for up to
    `settle_s` of real time: the loop sleeps meanwhile and the answer wakes it. Waits that only
    another task can end (an asyncio Event, Queue, Lock, another task) hold nothing, so a reader
    of a queue nobody fills costs nothing; nor does a plain future past settle_s. `with
    clock.hold():` stops time outright (a test reading the state at one instant). One loop per
    clock; not thread-safe (call it from the loop's thread).
    """

    virtual = True
    IDLE_TICKS = 2  # idle checks in a row before a jump; between two, the loop polls its sockets once

    def __init__(self, start_us: int | None = None, *, settle_s: float = 0.5) -> None:
        self._us = now_us() if start_us is None else start_us
        self.settle_s = settle_s
        self._own: weakref.WeakSet[asyncio.Future] = weakref.WeakSet()  # the futures of this clock's sleeps
        # task -> (id of the future it waits on, real time it was first seen waiting on it)
        self._waits: weakref.WeakKeyDictionary[asyncio.Task, tuple[int, float]] = weakref.WeakKeyDictionary()
        self.start_us = self._us
        self._heap: list[tuple[int, int, VirtualTimer]] = []
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False
        self._idle = 0
        self._held = 0
        self.jumps = 0  # how many times time jumped (for tests and reports)

    # ---------------------------------------------------------------- reading
    def now_us(self) -> int:
        return self._us

    def monotonic(self) -> float:
        return self._us / 1_000_000

    @property
    def elapsed_s(self) -> float:
        return (self._us - self.start_us) / 1_000_000

    # ---------------------------------------------------------------- waiting
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> VirtualTimer:
        timer = VirtualTimer(self._us + max(0, round(delay * 1_000_000)), callback, args)
        heapq.heappush(self._heap, (timer.when_us, next(self._seq), timer))
        self._arm()
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._own.add(fut)
        timer = self.call_later(seconds, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Time stands still inside (timers due now still fire); it moves again on leaving."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._heap and self._loop is not None and not self._loop.is_closed():
                self._arm(self._loop)

    # ---------------------------------------------------------------- advancing
    def _arm(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._armed:
            return
        loop = loop or asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a VirtualClock serves one event loop")
        self._armed = True
        self._idle = 0
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._armed = False
        loop = self._loop
        assert loop is not None
        self._fire_due(loop)
        if not self._heap or self._held:
            return  # parked: the next call_later, or the end of the hold, arms it again
        # CPython's loop keeps what runs next in `_ready`; a loop without it (uvloop) counts only
        # the idle ticks, which still lets every ready task run once between jumps.
        if getattr(loop, "_ready", None):
            self._idle = 0
        else:
            self._idle += 1
        if self._idle >= self.IDLE_TICKS and self.settle_s > 0 and self._settling(loop):
            self._idle = 0
            self._armed = True
            # real I/O: the loop sleeps until a thread or socket answers, or for a moment
            loop.call_later(0.0002, self._tick)  # real I/O
            return
        if self._idle >= self.IDLE_TICKS:
            self._us = self._heap[0][0]  # the earliest live timer: _fire_due dropped the rest
            self.jumps += 1
            self._idle = 0
            self._fire_due(loop)
        self._armed = True
        loop.call_soon(self._tick)

    def _settling(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a task began waiting on something other than this clock less than settle_s ago."""
        now = time.monotonic()
        settling = False
        # CPython's registry of live tasks, read without all_tasks()' copy and filtering: this runs
        # at every jump of a simulated day.
        registry = getattr(asyncio.tasks, "_all_tasks", None)
        tasks = list(registry) if isinstance(registry, weakref.WeakSet) else asyncio.all_tasks(loop)
        for task in tasks:
            waiter = getattr(task, "_fut_waiter", None)  # what the task awaits (CPython); None: done or ready
            if waiter is None or waiter in self._own or task.get_loop() is not loop or not _outside(task, waiter):
                continue
            seen = self._waits.get(task)
            if seen is None or seen[0] != id(waiter):
                self._waits[task] = (id(waiter), now)
                settling = True
            elif now - seen[1] < self.settle_s:
                settling = True
        return settling

    def _fire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run (on the loop) every timer due by now, in order; drop cancelled ones on the way."""
        heap = self._heap
        while heap and (heap[0][2].cancelled or heap[0][0] <= self._us):
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                timer.cancelled = True  # fired: a later cancel() is a no-op
                loop.call_soon(timer.callback, *timer.args)


_TASK_WAITS = {asyncio.locks.__file__, asyncio.queues.__file__}


def _outside(task: asyncio.Task, waiter: asyncio.Future) -> bool:
    """Whether `task` waits on something outside the loop's tasks (a thread, a socket, a real
    timer): a plain future, not another task, a gather, or an asyncio Event/Queue/Lock."""
    if isinstance(waiter, asyncio.Task) or type(waiter).__name__ == "_GatheringFuture":
        return False
    coro = task.get_coro()
    while True:  # down to the innermost coroutine: the one awaiting `waiter`
        inner = getattr(coro, "cr_await", None)
        if inner is None or not hasattr(inner, "cr_code"):
            break
        coro = inner
    code = getattr(coro, "cr_code", None)
    return code is None or code.co_filename not in _TASK_WAITS


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
