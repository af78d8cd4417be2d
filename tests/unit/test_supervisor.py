"""The supervisor of background loops: dependency order, reverse stop, restarts with backoff and an
event, each loop's state. On the virtual clock, so minutes of backoff take no time."""

from __future__ import annotations

import asyncio

import pytest

from backend.runtime.clock import VirtualClock, from_us, to_us
from backend.runtime.event_log import EventLog
from backend.runtime.schedules import Daily, Hourly, Monthly
from backend.runtime.supervisor import Supervisor

START_US = to_us(from_us(1_767_225_600_000_000))  # 2026-01-01 00:00 UTC
S = 1_000_000


async def test_loops_start_after_what_they_need_and_stop_in_reverse():
    clock = VirtualClock(START_US)
    sup = Supervisor(clock)
    log: list[str] = []

    def forever(name: str):
        async def run() -> None:
            log.append(f"start {name}")
            try:
                await clock.sleep(10**9)
            finally:
                log.append(f"stop {name}")
        return run

    # Registered out of order: the supervisor, not the caller, orders them.
    sup.loop("meter", forever("meter"), after=("fleet", "ledger"))
    sup.loop("fleet", forever("fleet"), after=("ledger",))
    sup.loop("ledger", forever("ledger"))
    sup.loop("topup", forever("topup"))
    sup.start()
    await clock.sleep(1)
    assert log == ["start ledger", "start fleet", "start meter", "start topup"]
    assert [i.name for i in sup.loops()] == ["ledger", "fleet", "meter", "topup"]
    assert {i.state for i in sup.loops()} == {"running"}
    await sup.stop()
    assert log[4:] == ["stop topup", "stop meter", "stop fleet", "stop ledger"]
    assert {i.state for i in sup.loops()} == {"stopped"}


async def test_unknown_and_circular_dependencies_are_refused():
    sup = Supervisor(VirtualClock(START_US))
    sup.every("a", lambda: None, 1, after=("b",))
    sup.every("b", lambda: None, 1, after=("a",))
    with pytest.raises(ValueError, match="wait on each other"):
        sup.start()
    sup2 = Supervisor(VirtualClock(START_US))
    sup2.every("a", lambda: None, 1, after=("nobody",))
    with pytest.raises(ValueError, match="needs nobody"):
        sup2.start()
    with pytest.raises(ValueError, match="already registered"):
        sup2.every("a", lambda: None, 1)


async def test_a_periodic_loop_runs_every_interval_and_reports_its_state():
    clock = VirtualClock(START_US)
    sup = Supervisor(clock)
    at: list[float] = []
    sup.every("tick", lambda: at.append(clock.elapsed_s), 5, first_run_s=0)
    sup.start()
    await clock.sleep(12)
    info = sup.info("tick")
    assert at == [0, 5, 10]
    assert (info.kind, info.every, info.state, info.runs) == ("every", "every 5s", "running", 3)
    assert info.last_run_us == START_US + 10 * S
    assert info.next_run_us == START_US + 15 * S
    assert info.last_error is None and info.restarts == 0
    await sup.stop()
    assert sup.info("tick").next_run_us is None


async def test_a_crashing_loop_is_restarted_with_doubling_backoff_and_an_event():
    clock = VirtualClock(START_US)
    events = EventLog()
    sup = Supervisor(clock, events, backoff_base_s=1, backoff_max_s=4)
    calls: list[float] = []

    async def flaky() -> None:
        calls.append(clock.elapsed_s)
        if len(calls) <= 4:
            raise RuntimeError(f"boom {len(calls)}")

    sup.every("flaky", flaky, 10, first_run_s=0)
    sup.start()
    await clock.sleep(0.5)
    info = sup.info("flaky")
    assert info.state == "backing_off"
    assert info.last_error == "RuntimeError: boom 1" and info.last_error_us == START_US
    assert info.next_run_us == START_US + 1 * S
    await clock.sleep(20)
    # Crashes at 0, 1, 3, 7 (pauses 1, 2, 4, then capped at 4); the run at 11 succeeds, and the
    # next comes one interval later: a clean run resets the backoff.
    assert calls == [0, 1, 3, 7, 11]
    assert (info.state, info.runs, info.restarts) == ("running", 1, 4)
    assert info.last_error == "RuntimeError: boom 4"  # kept until the next error
    restarted = [e for e in events.since(0) if e.kind == "loop.restarted"]
    assert [(e.subject, e.level) for e in restarted] == [("flaky", "error")] * 4
    assert restarted[0].message == "RuntimeError: boom 1; restarting in 1s"
    assert restarted[3].message == "RuntimeError: boom 4; restarting in 4s"
    await clock.sleep(10)
    assert calls[-1] == 21
    await sup.stop()


async def test_a_continuous_loop_that_raises_is_started_again():
    clock = VirtualClock(START_US)
    sup = Supervisor(clock, EventLog(), backoff_base_s=2)
    starts: list[float] = []

    async def consumer() -> None:
        starts.append(clock.elapsed_s)
        await clock.sleep(3)
        if len(starts) < 3:
            raise ConnectionError("lost it")
        await clock.sleep(10**9)

    sup.loop("consumer", consumer)
    sup.start()
    await clock.sleep(30)
    assert starts == [0, 5, 12]  # ran 3 s, paused 2 s; ran 3 s, paused 4 s
    info = sup.info("consumer")
    assert (info.kind, info.state, info.runs, info.restarts) == ("loop", "running", 3, 2)
    await sup.stop()


async def test_a_loop_registered_after_start_starts_at_once():
    clock = VirtualClock(START_US)
    sup = Supervisor(clock)
    sup.start()
    ran = asyncio.Event()
    sup.every("late", ran.set, 1, first_run_s=0)
    await clock.wait_for(ran.wait(), 1)
    assert sup.info("late").state == "running"
    await sup.stop()


def test_calendar_rules():
    t = to_us(from_us(START_US).replace(month=3, day=15, hour=12, minute=30))  # 2026-03-15 12:30 UTC
    m = Monthly(day=2)
    assert from_us(m.next_after(t)).isoformat() == "2026-04-02T00:00:00+00:00"
    assert from_us(m.last_at_or_before(t)).isoformat() == "2026-03-02T00:00:00+00:00"
    exact = m.last_at_or_before(t)
    assert m.last_at_or_before(exact) == exact and m.next_after(exact) > exact
    m31 = Monthly(day=31, hour=6)  # months without a 31st are skipped
    assert from_us(m31.last_at_or_before(t)).isoformat() == "2026-01-31T06:00:00+00:00"
    assert from_us(m31.next_after(t)).isoformat() == "2026-03-31T06:00:00+00:00"
    dec = to_us(from_us(START_US).replace(year=2025, month=12, day=20))
    assert from_us(Monthly(day=2).next_after(dec)).isoformat() == "2026-01-02T00:00:00+00:00"
    d = Daily(hour=12, minute=45)
    assert from_us(d.last_at_or_before(t)).isoformat() == "2026-03-14T12:45:00+00:00"
    assert from_us(d.next_after(t)).isoformat() == "2026-03-15T12:45:00+00:00"
    h = Hourly(minute=30)
    assert h.last_at_or_before(t) == t
    assert from_us(h.next_after(t)).isoformat() == "2026-03-15T13:30:00+00:00"
    assert m.describe() == "monthly on day 2 at 00:00 UTC"
    with pytest.raises(ValueError):
        Monthly(day=32)


async def test_remove_stops_one_loop_and_forgets_it_unless_another_needs_it():
    clock = VirtualClock(START_US)
    sup = Supervisor(clock)
    ticks: list[float] = []
    sup.every("base", lambda: None, 1)
    sup.every("user", lambda: None, 1, after=("base",))
    sup.every("topup", lambda: ticks.append(clock.elapsed_s), 1, first_run_s=0)
    sup.start()
    await clock.sleep(2.5)
    with pytest.raises(ValueError, match="user needs base"):
        await sup.remove("base")
    await sup.remove("topup")
    await sup.remove("never-registered")  # nothing to do
    await clock.sleep(5)
    assert ticks == [0, 1, 2]
    assert [i.name for i in sup.loops()] == ["base", "user"]
    await sup.stop()


async def test_a_periodic_loop_runs_sooner_when_it_asks_or_is_woken():
    """A loop with a long interval still acts on time: a run may return the seconds until work falls
    due (below the interval), and wake() runs it at once, even when the wake came during a run."""
    clock = VirtualClock(START_US)
    sup = Supervisor(clock)
    runs: list[float] = []
    ask: list[float | None] = [5.0, None, None, None]

    def sweep() -> float | None:
        runs.append(clock.elapsed_s)
        return ask.pop(0) if ask else None

    sup.every("sweep", sweep, 60, first_run_s=0)
    sup.start()
    await clock.sleep(30)
    assert runs == [0, 5]  # asked for 5 s; then the interval, 60 s, from 5
    sup.wake("sweep")
    await clock.sleep(1)
    assert runs == [0, 5, 30]  # woken at 30
    await clock.sleep(60)
    assert runs == [0, 5, 30, 90]  # and the interval again from there
    sup.wake("nobody")  # an unknown name is a no-op
    await sup.stop()
