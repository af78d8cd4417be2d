"""One supervisor for every background loop: named, ordered, restarted, visible.

A service registers its loops instead of running its own `create_task` + sleep:
    supervisor.every("fleet.health", fleet.check_health, 2.0)              # every N seconds
    supervisor.schedule("billing.invoices", invoice, Monthly(day=2))        # a calendar rule
    supervisor.loop("ledger.writer", writer.run, after=("..."))            # a long-running task
`after` names loops that must start before this one (and stop after it). `start()` starts them
in that order; `stop()` stops them in reverse, one at a time, so a loop never outlives what it
uses. A loop that raises is restarted after a pause that doubles from `backoff_base_s` to
`backoff_max_s` (reset by a clean run) and an event says so: a crash never ends a loop silently.

Every wait and time read goes through the Clock, so a VirtualClock runs the loops in simulated
time. Calendar schedules store their last run (table schedule_run) and, on start, run once if a
scheduled instant passed while the backend was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.runtime.clock import REAL_CLOCK, Clock
from backend.runtime.schedules import Rule
from backend.runtime.tables import ScheduleRun

log = logging.getLogger(__name__)

Kind = Literal["every", "schedule", "loop"]
State = Literal["registered", "running", "backing_off", "stopped"]


class Events(Protocol):
    """What the supervisor reports to (the EventLog, or anything with its `add`)."""

    def add(self, kind: str, subject: str, message: str, level: str = "info") -> Any: ...


@dataclass(slots=True)
class LoopInfo:
    """One loop's state, as /admin/loops shows it. Times are UTC µs; None: not yet."""

    name: str
    kind: Kind
    every: str  # what drives it, in words: "every 2s", "monthly on day 2 at 00:00 UTC", "continuous"
    after: tuple[str, ...]
    state: State = "registered"
    runs: int = 0  # completed runs (a `loop` counts its starts)
    restarts: int = 0
    last_run_us: int | None = None  # when the last run finished (a `loop`: when it last started)
    next_run_us: int | None = None
    last_error: str | None = None
    last_error_us: int | None = None


@dataclass(slots=True)
class _Entry:
    info: LoopInfo
    body: Callable[[_Entry], Awaitable[None]]
    task: asyncio.Task | None = None
    failures: int = 0  # in a row; sets the backoff
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set: run an `every` loop now


class Supervisor:
    def __init__(self, clock: Clock = REAL_CLOCK, events: Events | None = None,
                 engine: AsyncEngine | None = None, *, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0) -> None:
        self.clock, self._events, self._engine = clock, events, engine
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []  # the order they were started in
        self._started = False

    # ---------------------------------------------------------------- registering
    def every(self, name: str, fn: Callable[[], Awaitable[Any] | Any], interval_s: float, *,
              after: Iterable[str] = (), first_run_s: float | None = None, describe: str | None = None) -> None:
        """Run `fn` every `interval_s` seconds (from the end of one run to the start of the next).
        The first run is `first_run_s` after start (default: one interval; 0: at once).
        `fn` may be a coroutine function or a plain one. A run that returns a number of seconds
        below the interval is next run that much later (work known to fall due sooner), and
        `wake(name)` runs it at once: a loop can sleep long yet act on time."""
        if interval_s <= 0:
            raise ValueError(f"{name}: interval must be positive, not {interval_s}")
        first = interval_s if first_run_s is None else first_run_s

        async def body(e: _Entry) -> None:
            # After a crash the backoff was the wait: run again at once.
            delay = 0.0 if e.failures else first if e.info.runs == 0 else interval_s
            while True:
                e.info.next_run_us = self.clock.now_us() + round(delay * 1_000_000)
                await self._nap(e, delay)
                sooner = await self._run_once(e, fn)
                delay = interval_s
                if isinstance(sooner, int | float) and not isinstance(sooner, bool) and sooner < interval_s:
                    delay = max(float(sooner), 0.0)

        self._add(LoopInfo(name, "every", describe or f"every {interval_s:g}s", tuple(after)), body)

    def wake(self, name: str) -> None:
        """Run the `every` loop `name` now rather than at its next time (no-op for an unknown name)."""
        e = self._entries.get(name)
        if e is not None:
            e.wake.set()

    async def _nap(self, e: _Entry, delay: float) -> None:
        """Sleep `delay` seconds, or less if woken; a wake that came during the last run counts."""
        if not e.wake.is_set() and delay > 0:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(e.wake.wait(), delay)
        e.wake.clear()

    def loop(self, name: str, fn: Callable[[], Awaitable[None]], *, after: Iterable[str] = ()) -> None:
        """Run the coroutine `fn()` for as long as the supervisor runs; restart it if it raises.
        Returning ends it (state "stopped")."""

        async def body(e: _Entry) -> None:
            e.info.runs += 1
            e.info.last_run_us = self.clock.now_us()
            await fn()

        self._add(LoopInfo(name, "loop", "continuous", tuple(after)), body)

    def schedule(self, name: str, fn: Callable[[int], Awaitable[Any]], rule: Rule, *,
                 after: Iterable[str] = ()) -> None:
        """Run `fn(scheduled_us)` at each instant of `rule`, once per instant, even across restarts:
        the last instant run is stored, and a start after one was missed runs it then (once, for
        the latest missed instant: `fn` learns which from its argument). On the very first start
        nothing in the past is run; the schedule counts from then."""
        if self._engine is None:
            raise ValueError(f"{name}: a calendar schedule needs the supervisor's database engine")

        async def body(e: _Entry) -> None:
            while True:
                now = self.clock.now_us()
                due = rule.last_at_or_before(now)
                done = await self._last_scheduled(name)
                if done is None:
                    await self._save_run(name, due, None)  # first start: count from here
                elif done < due:
                    await self._run_once(e, fn, due)
                    # A run that happened is recorded even if stop() comes meanwhile: else the
                    # next start would run it again (an invoice sent twice).
                    saving = asyncio.ensure_future(self._save_run(name, due, e.info.last_run_us))
                    try:
                        await asyncio.shield(saving)
                    except asyncio.CancelledError:
                        await saving
                        raise
                next_us = rule.next_after(max(due, now))
                e.info.next_run_us = next_us
                await self.clock.sleep(max(0, next_us - self.clock.now_us()) / 1_000_000)

        self._add(LoopInfo(name, "schedule", rule.describe(), tuple(after)), body)

    def _add(self, info: LoopInfo, body: Callable[[_Entry], Awaitable[None]]) -> None:
        if info.name in self._entries:
            raise ValueError(f"a loop named {info.name!r} is already registered")
        entry = _Entry(info, body)
        self._entries[info.name] = entry
        if self._started:  # registered late: starts now, once what it needs runs
            missing = [d for d in info.after if d not in self._entries]
            if missing:
                del self._entries[info.name]
                raise ValueError(f"{info.name} needs {', '.join(missing)}, which no one registered")
            self._launch(entry)

    # ---------------------------------------------------------------- running
    def start(self) -> None:
        """Start every registered loop, each after those it names in `after`."""
        if self._started:
            return
        for name in self._dependency_order():
            self._launch(self._entries[name])
        self._started = True

    async def stop(self) -> None:
        """Stop the loops in the reverse of their start order, each one finished before the next."""
        self._started = False
        for name in reversed(self._order):
            e = self._entries[name]
            if e.task is not None:
                e.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await e.task
                e.task = None
            e.info.state, e.info.next_run_us = "stopped", None
        self._order.clear()

    async def remove(self, name: str) -> None:
        """Stop one loop and forget it (a part of the backend that goes away, like the local fleet)."""
        e = self._entries.get(name)
        if e is None:
            return
        needed_by = [n for n, x in self._entries.items() if name in x.info.after]
        if needed_by:
            raise ValueError(f"{', '.join(needed_by)} needs {name}: remove them first")
        del self._entries[name]
        if name in self._order:
            self._order.remove(name)
        if e.task is not None:
            e.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await e.task

    def loops(self) -> list[LoopInfo]:
        """Every loop's state, in start order (then registration order for those not started)."""
        names = self._order + [n for n in self._entries if n not in self._order]
        return [self._entries[n].info for n in names]

    def info(self, name: str) -> LoopInfo:
        return self._entries[name].info

    def _dependency_order(self) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order:
                return
            if name not in self._entries:
                raise ValueError(f"{chain[-1]} needs {name}, which no one registered")
            if name in visiting:
                raise ValueError(f"loops wait on each other: {' -> '.join((*chain, name))}")
            visiting.add(name)
            for dep in self._entries[name].info.after:
                visit(dep, (*chain, name))
            order.append(name)

        for name in self._entries:  # registration order among independent loops
            visit(name, ())
        return order

    def _launch(self, e: _Entry) -> None:
        e.info.state = "running"
        e.task = asyncio.create_task(self._supervise(e), name=f"loop:{e.info.name}")
        self._order.append(e.info.name)

    async def _supervise(self, e: _Entry) -> None:
        info = e.info
        while True:
            try:
                await e.body(e)
                info.state, info.next_run_us = "stopped", None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                e.failures += 1
                info.restarts += 1
                info.last_error = f"{type(exc).__name__}: {exc}"[:500]
                info.last_error_us = self.clock.now_us()
                pause = min(self.backoff_max_s, self.backoff_base_s * 2 ** (e.failures - 1))
                log.error("loop %s failed; restarting in %gs", info.name, pause, exc_info=exc)
                if self._events is not None:
                    self._events.add("loop.restarted", info.name,
                                     f"{info.last_error}; restarting in {pause:g}s", "error")
                info.state = "backing_off"
                info.next_run_us = info.last_error_us + round(pause * 1_000_000)
                await self.clock.sleep(pause)
                info.state = "running"

    async def _run_once(self, e: _Entry, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        e.failures = 0
        e.info.runs += 1
        e.info.last_run_us = self.clock.now_us()
        return result

    # ---------------------------------------------------------------- schedule store
    async def _last_scheduled(self, name: str) -> int | None:
        assert self._engine is not None
        t = ScheduleRun.__table__
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.c.scheduled_us, t.c.finished_us).where(t.c.name == name))).first()
        if row is None:
            return None
        info = self._entries[name].info
        if info.last_run_us is None and row.finished_us is not None:
            info.last_run_us = row.finished_us  # what the previous run of the backend did
        return row.scheduled_us

    async def _save_run(self, name: str, scheduled_us: int, finished_us: int | None) -> None:
        assert self._engine is not None
        t = ScheduleRun.__table__
        async with self._engine.begin() as conn:
            changed = await conn.execute(update(t).where(t.c.name == name)
                                         .values(scheduled_us=scheduled_us, finished_us=finished_us))
            if changed.rowcount == 0:
                await conn.execute(insert(t).values(name=name, scheduled_us=scheduled_us, finished_us=finished_us))
