"""Calendar schedules keep their last run in the database (a real SQLite file) and catch up, once,
a run missed while the backend was down. Each "run of the backend" is a new Supervisor on a
virtual clock set to when it starts."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from backend.runtime.clock import VirtualClock, to_us
from backend.runtime.event_log import EventLog
from backend.runtime.schedules import Monthly
from backend.runtime.supervisor import Supervisor
from backend.runtime.tables import ScheduleRun


def utc(*args: int) -> int:
    return to_us(dt.datetime(*args, tzinfo=dt.UTC))


class Invoicer:
    """Stands for the monthly job: records which scheduled instant each run was for, then waits
    for the test to let it finish (no timer is pending meanwhile, so virtual time stands still)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.runs: list[int] = []
        self.fail_first = fail_first
        self.ran = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, scheduled_us: int) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("payment provider unreachable")
        self.runs.append(scheduled_us)
        self.ran.set()
        await self.gate.wait()
        self.gate.clear()

    async def next_run(self) -> int:
        """The instant of the run that started next (it is running now, held at the gate)."""
        # A real timeout: the database work runs in a thread, during which virtual time may move.
        await asyncio.wait_for(self.ran.wait(), 10)
        self.ran.clear()
        return self.runs[-1]

    def finish(self) -> None:
        self.gate.set()


def backend_run(engine, start_us: int, job: Invoicer,
                events: EventLog | None = None) -> tuple[VirtualClock, Supervisor]:
    clock = VirtualClock(start_us)
    sup = Supervisor(clock, events, engine)
    sup.schedule("billing.invoices", job, Monthly(day=2))
    sup.start()
    return clock, sup


async def stored(engine) -> tuple[int, int | None] | None:
    t = ScheduleRun.__table__
    async with engine.connect() as conn:
        q = select(t.c.scheduled_us, t.c.finished_us).where(t.c.name == "billing.invoices")
        row = (await conn.execute(q)).first()
    return None if row is None else (row.scheduled_us, row.finished_us)


async def test_a_monthly_schedule_fires_stores_its_run_and_catches_up_after_downtime(engine):
    # First start ever, 2026-01-01 12:00: nothing in the past is run; the 2nd at 00:00 is.
    job = Invoicer()
    _clock, sup = backend_run(engine, utc(2026, 1, 1, 12), job)
    assert await job.next_run() == utc(2026, 1, 2)
    job.finish()
    assert await job.next_run() == utc(2026, 2, 2)
    info = sup.info("billing.invoices")  # January's done, February's running
    assert (info.kind, info.every, info.state, info.runs) == ("schedule", "monthly on day 2 at 00:00 UTC", "running", 1)
    assert info.last_run_us == utc(2026, 1, 2) and info.next_run_us == utc(2026, 2, 2)
    assert await stored(engine) == (utc(2026, 1, 2), utc(2026, 1, 2))
    await sup.stop()  # stopped in the middle of February's run: it is not recorded
    assert await stored(engine) == (utc(2026, 1, 2), utc(2026, 1, 2))

    # Down until 2026-05-05 09:00: February (interrupted), March, April and May were missed. One
    # run, for the latest (May's), as soon as it starts; then June's on time.
    job = Invoicer()
    _clock, sup = backend_run(engine, utc(2026, 5, 5, 9), job)
    assert sup.info("billing.invoices").last_run_us is None
    assert await job.next_run() == utc(2026, 5, 2)
    assert sup.info("billing.invoices").last_run_us == utc(2026, 1, 2)  # read back from the database
    job.finish()
    assert await job.next_run() == utc(2026, 6, 2)
    assert job.runs == [utc(2026, 5, 2), utc(2026, 6, 2)]
    assert sup.info("billing.invoices").last_run_us == utc(2026, 5, 5, 9)
    assert await stored(engine) == (utc(2026, 5, 2), utc(2026, 5, 5, 9))
    job.finish()
    assert await job.next_run() == utc(2026, 7, 2)
    await sup.stop()
    assert await stored(engine) == (utc(2026, 6, 2), utc(2026, 6, 2))

    # A restart with nothing missed (2026-06-20) runs nothing until July's.
    job = Invoicer()
    _clock, sup = backend_run(engine, utc(2026, 6, 20), job)
    assert await job.next_run() == utc(2026, 7, 2)
    assert job.runs == [utc(2026, 7, 2)]
    await sup.stop()


async def test_a_failed_scheduled_run_is_retried_and_not_recorded_until_it_succeeds(engine):
    events = EventLog()
    job = Invoicer()
    _clock, sup = backend_run(engine, utc(2026, 1, 1, 12), job, events)  # baseline: counts from here
    await asyncio.wait_for(_until(lambda: sup.info("billing.invoices").next_run_us == utc(2026, 1, 2)), 10)
    await sup.stop()

    job = Invoicer(fail_first=2)
    clock, sup = backend_run(engine, utc(2026, 1, 3), job, events)  # the 2nd was missed
    assert await job.next_run() == utc(2026, 1, 2)
    info = sup.info("billing.invoices")
    assert info.restarts == 2 and info.last_error == "RuntimeError: payment provider unreachable"
    assert info.last_error_us == utc(2026, 1, 3, 0, 0, 1)  # failed at once, then 1 s later
    assert clock.now_us() == utc(2026, 1, 3, 0, 0, 3)  # after pauses of 1 s and 2 s
    assert job.runs == [utc(2026, 1, 2)]
    job.finish()
    assert await job.next_run() == utc(2026, 2, 2)  # January's recorded, February's next
    assert [e.subject for e in events.since(0) if e.kind == "loop.restarted"] == ["billing.invoices"] * 2
    await sup.stop()
    assert (await stored(engine))[0] == utc(2026, 1, 2)


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.01)
