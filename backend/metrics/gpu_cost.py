"""What the GPUs cost: stretches of time each host was connected, at its hourly rate.

A host costs its rate from the moment its agent registers until it deregisters or is removed.
A host that goes silent keeps costing: a rented machine bills whether or not its agent answers,
and the operator stops the bill by removing (tearing down) the host, which ends the stretch.
Community hosts have a rate of 0; they are paid a share of each request instead (the ledger's
host payouts).

Stretches are rows of `host_uptime`; an open stretch's end moves forward in memory on every tick
and reaches the database every `persist_every_s`, so a crash loses at most that much cost and a
restart reads the day's cost back. Costs are integer nano-USD, rounded down per stretch.

The meter also notes, each tick, which models each connected host serves (per minute, in memory):
gpu_cost_ledger.py posts each host's cost to the ledger with the models it served then.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.fleet.registry import Fleet
from backend.fleet.tables import HostUptime
from backend.runtime.clock import REAL_CLOCK, Clock
from backend.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
# Minutes of served models kept when nobody takes them (a meter without a ledger poster).
SERVED_KEPT_MINUTES = 2 * 24 * 60


@dataclass(slots=True)
class Stretch:
    host_id: str
    started_us: int
    ended_us: int
    cost_per_hour: int
    row_id: int | None = None
    persisted_us: int = 0

    def cost_between(self, since_us: int, until_us: int) -> int:
        overlap = min(self.ended_us, until_us) - max(self.started_us, since_us)
        return overlap * self.cost_per_hour // HOUR_US if overlap > 0 else 0


class GpuCostMeter:
    def __init__(self, engine: AsyncEngine, fleet: Fleet, *, tick_s: float = 5.0,
                 persist_every_s: float = 60.0, clock: Clock = REAL_CLOCK,
                 supervisor: Supervisor | None = None) -> None:
        self._engine, self._fleet, self.clock = engine, fleet, clock
        self.tick_s, self._persist_every_us = tick_s, int(persist_every_s * 1_000_000)
        self._open: dict[str, Stretch] = {}
        self._lock = asyncio.Lock()
        # minute start (µs) -> host id -> the models it served in that minute (seen at a tick)
        self._served: dict[int, dict[str, set[str]]] = {}
        # Ticks run under the backend's supervisor (after the fleet's health check, whose view of
        # the hosts they meter), or one of its own when the meter runs alone (tests, tools). A tick
        # that fails (a database hiccup) is retried after the supervisor's backoff.
        self._own_loops = supervisor is None
        self._loops = Supervisor(clock) if supervisor is None else supervisor
        self._loops.every("metrics.gpu_cost", self.tick, tick_s, first_run_s=0,
                          after=() if supervisor is None else ("fleet.health",))

    def start(self) -> None:
        if self._own_loops:
            self._loops.start()

    async def close(self) -> None:
        if self._own_loops:
            await self._loops.stop()
        # Write the open stretches' ends: stopping the router does not stop the rented machines,
        # but what they cost while unobserved is not ours to guess; the next start opens anew.
        await self._persist(self.clock.now_us(), force=True)
        self._open.clear()

    async def tick(self, now: int | None = None) -> None:
        """Open, extend and close stretches to match which hosts are connected now."""
        now = self.clock.now_us() if now is None else now
        async with self._lock:
            connected = {h.id: h for h in self._fleet.hosts() if h.registered and h.state != "removed"}
            for host_id in [h for h in self._open if h not in connected]:
                await self._close(self._open.pop(host_id), now)
            for host in connected.values():
                stretch = self._open.get(host.id)
                if stretch is not None and stretch.cost_per_hour != host.cost_per_hour:
                    await self._close(self._open.pop(host.id), now)  # a new rate starts a new stretch
                    stretch = None
                if stretch is None:
                    self._open[host.id] = await self._begin(host.id, host.cost_per_hour, now)
                else:
                    stretch.ended_us = max(stretch.ended_us, now)
            self._note_served(connected.values(), now)
            await self._persist(now)

    def _note_served(self, hosts, now: int) -> None:
        minute = now - now % MINUTE_US
        seen = self._served.setdefault(minute, {})
        for host in hosts:
            if host.cost_per_hour and host.replicas:
                seen.setdefault(host.id, set()).update(host.replicas)
        if len(self._served) > SERVED_KEPT_MINUTES:
            self.forget_served(minute - SERVED_KEPT_MINUTES * MINUTE_US)

    async def _begin(self, host_id: str, rate: int, now: int) -> Stretch:
        s = Stretch(host_id, now, now, rate, persisted_us=now)
        async with self._engine.begin() as conn:
            result = await conn.execute(insert(HostUptime.__table__).values(
                host_id=host_id, started_us=now, ended_us=now, cost_per_hour=rate))
            s.row_id = result.inserted_primary_key[0]
        return s

    async def _close(self, s: Stretch, now: int) -> None:
        s.ended_us = max(s.ended_us, now)
        await self._write_ends([s])

    async def _persist(self, now: int, *, force: bool = False) -> None:
        due = [s for s in self._open.values() if force or now - s.persisted_us >= self._persist_every_us]
        if due:
            await self._write_ends(due)

    async def _write_ends(self, stretches: list[Stretch]) -> None:
        t = HostUptime.__table__
        async with self._engine.begin() as conn:
            for s in stretches:
                await conn.execute(update(t).where(t.c.id == s.row_id).values(ended_us=s.ended_us))
        for s in stretches:
            s.persisted_us = s.ended_us

    # ------------------------------------------------------------------ for the ledger's postings
    def final_us(self) -> int:
        """The instant through which every stretch is final in the database: the earliest written end
        of an open stretch that costs money (later than that it may still grow), else now."""
        return min((s.persisted_us for s in self._open.values() if s.cost_per_hour), default=self.clock.now_us())

    async def persisted_stretches(self, since_us: int, until_us: int, *,
                                  write_open: bool = False) -> tuple[list[Stretch], int]:
        """Every stretch overlapping [since, until) as the database has it, and final_us() (read
        together, under the lock: a stretch a tick is closing is not caught half written).
        `write_open` writes the open stretches' ends first, so that all is final up to the last tick.
        What is posted from these survives a crash: the rows say at least as much."""
        async with self._lock:
            if write_open:
                await self._persist(self.clock.now_us(), force=True)
            final = self.final_us()
            t = HostUptime.__table__
            q = select(t.c.id, t.c.host_id, t.c.started_us, t.c.ended_us, t.c.cost_per_hour).where(
                t.c.ended_us >= since_us, t.c.started_us < until_us)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(q)).all()
        return [Stretch(r[1], r[2], r[3], r[4], r[0], r[3]) for r in rows], final

    def served(self, host_id: str, since_us: int, until_us: int) -> set[str] | None:
        """The models `host_id` served in [since, until), as seen at the ticks; None when no tick
        of that time saw it (the meter was not running then, or the host served nothing)."""
        out: set[str] | None = None
        minute = since_us - since_us % MINUTE_US
        while minute < until_us:
            models = self._served.get(minute, {}).get(host_id)
            if models:
                out = (out or set()) | models
            minute += MINUTE_US
        return out

    def forget_served(self, before_us: int) -> None:
        """Drop the served models of the minutes that end before `before_us` (posted already)."""
        for minute in [m for m in self._served if m + MINUTE_US <= before_us]:
            del self._served[minute]

    # ------------------------------------------------------------------ reading
    async def stretches(self, since_us: int, until_us: int) -> list[Stretch]:
        """Every stretch overlapping [since, until): from the database, with open ones as memory
        has them (memory is ahead of the database by up to persist_every_s)."""
        t = HostUptime.__table__
        q = select(t.c.id, t.c.host_id, t.c.started_us, t.c.ended_us, t.c.cost_per_hour).where(
            t.c.ended_us >= since_us, t.c.started_us < until_us)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        live = {s.row_id: s for s in self._open.values()}
        out = [live.pop(r[0], None) or Stretch(r[1], r[2], r[3], r[4], r[0]) for r in rows]
        out += [s for s in live.values() if s.ended_us >= since_us and s.started_us < until_us]
        return out

    async def cost(self, since_us: int, until_us: int) -> dict[str, int]:
        """nano-USD per host over [since, until)."""
        out: dict[str, int] = {}
        for s in await self.stretches(since_us, until_us):
            out[s.host_id] = out.get(s.host_id, 0) + s.cost_between(since_us, until_us)
        return out

    def rate_now(self) -> dict[str, int]:
        """nano-USD per hour of each connected host costing money (read from the fleet, so it is
        current between ticks)."""
        return {h.id: h.cost_per_hour for h in self._fleet.hosts()
                if h.registered and h.state != "removed" and h.cost_per_hour}
