"""A day of the fleet on the VirtualClock: the production services (registry, health watch, hold
expiry, GPU cost meter, metrics, a monthly calendar schedule) run on virtual time, which jumps to
the next timer whenever the loop has nothing left to run. What it checks is what happened in that
day; the wall time is only bounded generously (a few seconds on a loaded 2-core machine)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from sqlalchemy import insert

from backend.app import Services
from backend.db.engine import make_engine, migrate
from backend.ledger import chart
from backend.runtime.bus import Event
from backend.runtime.clock import VirtualClock, to_us
from backend.runtime.schedules import Monthly
from backend.runtime.tables import ScheduleRun
from hostkit import protocol
from tests.router_harness import router_settings

MIN_US, HOUR_US = 60_000_000, 3_600_000_000
START_US = to_us(dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC))
DAY_US = 24 * HOUR_US
MODEL = "llama-3.1-8b-instruct"
RATE = 3_600_000_000  # nano-USD per hour ($3.60): a whole number of nano-USD per second
HEARTBEAT_S = 30.0
SILENT = (START_US + 6 * HOUR_US, START_US + 7 * HOUR_US)  # gpu-2's agent is silent 12:00-13:00 UTC
HOLD_AT = [START_US + 2 * HOUR_US, START_US + 9 * HOUR_US, START_US + 20 * HOUR_US]
HOLD_NANO = 1_000_000_000
TTL_S = 900
METER_TICK_S = 60


def _at(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat()


async def _missed_february(settings) -> None:
    """The backend was down on 2 February: the monthly schedule last ran for 2 January."""
    engine = make_engine(settings.db_url)
    await migrate(engine)
    jan2 = to_us(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    async with engine.begin() as conn:
        await conn.execute(insert(ScheduleRun.__table__).values(name="sim.invoices", scheduled_us=jan2,
                                                                finished_us=jan2 + 1_000_000))
    await engine.dispose()


async def test_a_simulated_day_of_the_fleet_on_the_virtual_clock(tmp_path):
    # A simulation does not crash: the GPU meter matches hosts each minute and writes hourly (a
    # backend's defaults, 5 s and 60 s, take ~6 s of wall time for the day, in database writes).
    settings = router_settings(tmp_path, heartbeat_interval_s=HEARTBEAT_S, hold_ttl_s=TTL_S,
                               gpu_meter_tick_s=METER_TICK_S, gpu_cost_persist_s=3600)
    await _missed_february(settings)
    clock = VirtualClock(START_US)
    wall_started = time.perf_counter()
    # Starting takes database work in threads, which lets virtual time run: the day starts after.
    with clock.hold():
        services = await Services.start(settings, clock=clock)
    events: list[Event] = []
    invoices: list[tuple[int, int]] = []  # (the scheduled instant, when it ran)
    hold_checks: list[tuple[str, int, bool, bool]] = []  # (when, ttl, open a minute before, a minute after)
    up_at_half_past_noon: list[str] = []
    try:
        fleet, ledger = services.fleet, services.ledger
        with clock.hold():
            services.bus.attach("simulated-day", events.append)

            async def invoice(scheduled_us: int) -> None:
                invoices.append((scheduled_us, clock.now_us()))

            services.supervisor.schedule("sim.invoices", invoice, Monthly(day=2))
            hosts = [(await fleet.enroll(f"gpu-{i}", cost_per_hour=RATE))[0] for i in range(3)]
            client = await services.clients.create_client("sim")
            await services.clients.grant_credit(client.id, 10 * HOLD_NANO, idempotency_key="sim-credit")
        account = chart.client_account(client.id)
        served = [protocol.ServedModel(model=MODEL, endpoint="http://127.0.0.1:9", engine="sim")]
        checks = [protocol.CheckResult(model=MODEL, passed=True, checked_us=START_US, summary="passed: simulated")]

        async def agent(host) -> None:
            """What hostkit's agent sends, on the virtual clock: register, then a heartbeat each interval."""
            fleet.register(host, protocol.Register(name=host.name, models=served, agent_version="sim", checks=checks))
            while True:
                await clock.sleep(HEARTBEAT_S)
                if host.name == "gpu-2" and SILENT[0] <= clock.now_us() < SILENT[1]:
                    continue
                await fleet.heartbeat(host, protocol.Heartbeat(models=served, checks=checks))

        async def requests_that_never_finish() -> None:
            """A request's hold whose request died: the hold expires after hold_ttl_s (15 min)."""
            for at in HOLD_AT:
                await clock.sleep((at - clock.now_us()) / 1e6)
                hold, durable = ledger.reserve(account, chart.REVENUE, HOLD_NANO, code="usage", ref=f"sim-{at}")
                await durable  # the writer thread commits it: virtual time may pass meanwhile
                assert hold.expires_us is not None
                await clock.sleep((hold.expires_us - MIN_US - clock.now_us()) / 1e6)
                before = any(h.key == hold.key for h in ledger.open_holds())
                await clock.sleep(2 * 60)
                after = any(h.key == hold.key for h in ledger.open_holds())
                hold_checks.append((_at(at), hold.expires_us - at, before, after))

        async def look_at_half_past_noon() -> None:
            await clock.sleep((SILENT[0] + 30 * MIN_US - clock.now_us()) / 1e6)
            up_at_half_past_noon.extend(fleet.status(h) for h in hosts)

        assert clock.now_us() == START_US
        agents = [asyncio.create_task(agent(h)) for h in hosts]
        checkers = [asyncio.create_task(requests_that_never_finish()), asyncio.create_task(look_at_half_past_noon())]
        await clock.sleep(DAY_US / 1e6)
        day_end = clock.now_us()
        with clock.hold():  # the day is over: what follows reads it at its last instant
            await asyncio.gather(*checkers)  # done within the day; raises what they raised
            for t in agents:
                t.cancel()
            metrics = await services.metrics.overview(day_end, [MODEL], 600)
            gpu_cost = await services.metrics.meter.cost(START_US, day_end)
            status_at_end = [fleet.status(h) for h in hosts]
            wall_s = time.perf_counter() - wall_started
    finally:
        await services.close()

    # A day passed on the clock, and every timestamp the services wrote is from that day.
    assert day_end == START_US + DAY_US
    events = [e for e in events if e.ts_us <= day_end]  # closing the services publishes a few more
    assert all(e.ts_us >= START_US for e in events)
    # Hosts: gpu-2 was lost (3 missed heartbeats) while its agent was silent, and back after.
    assert up_at_half_past_noon == ["active", "active", "down"]
    lost = [e for e in events if e.kind == "host.lost"]
    back = [e for e in events if e.kind == "host.back"]
    assert [e.subject for e in lost] == [hosts[2].id] and [e.subject for e in back] == [hosts[2].id]
    assert SILENT[0] + 2 * HEARTBEAT_S * 1e6 <= lost[0].ts_us <= SILENT[0] + 5 * HEARTBEAT_S * 1e6
    assert SILENT[1] <= back[0].ts_us <= SILENT[1] + HEARTBEAT_S * 1e6
    assert status_at_end == ["active"] * 3
    # Holds: each expired after its 15 minutes, none before; the credit is whole again.
    assert hold_checks == [(_at(at), TTL_S * 1_000_000, True, False) for at in HOLD_AT]
    assert ledger.open_holds() == []
    assert ledger.account(account).available == ledger.account(account).balance == 10 * HOLD_NANO
    # GPU cost accrued all day for each host (a rented machine costs while its agent is silent),
    # from the meter's first tick after registration.
    tick_cost = RATE * METER_TICK_S // 3600
    assert sorted(gpu_cost) == sorted(h.id for h in hosts)
    for cost in gpu_cost.values():
        assert RATE * 24 - 2 * tick_cost <= cost <= RATE * 24
    # Per minute, in the console's series: three hosts, a minute each, in every whole minute (the
    # last one until the meter's last tick, at most one tick before the end of the day).
    per_minute = metrics.series.gpu_cost_nano
    assert per_minute[:59] == [3 * RATE // 60] * 59
    assert 3 * RATE * (60 - METER_TICK_S) // 3600 <= per_minute[59] <= 3 * RATE // 60
    # The monthly schedule caught up February's run at start and ran March's at its instant.
    feb2, mar2 = (to_us(dt.datetime(2026, m, 2, tzinfo=dt.UTC)) for m in (2, 3))
    assert [s for s, _ in invoices] == [feb2, mar2]
    assert invoices[0][1] < START_US + MIN_US  # at start
    assert mar2 <= invoices[1][1] < mar2 + MIN_US
    print(f"a simulated day took {wall_s:.2f} s of wall time, {clock.jumps} clock jumps")
    # Generous, for a loaded machine: the point is virtual time (about 0.7 s here when quiet).
    assert wall_s < 20
