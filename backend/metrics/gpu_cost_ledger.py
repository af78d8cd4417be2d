"""GPU time in the ledger: what each rented or owned host cost, posted every interval as one
transfer GPU cost -> the provider's payable, so that profit per model and day is a ledger query.

The amounts are the GPU cost meter's (gpu_cost.py): its persisted stretches at each stretch's
hourly rate. A period is posted once every stretch overlapping it is final there in the database
(closed, or open with its written end past the period's; the meter writes open ends every
`gpu_cost_persist_s`, so postings run that much behind), so what the ledger holds never exceeds
what the meter's rows say, and a crash loses nothing the rows keep: the next start posts the
periods after the last one posted, up to what the meter counted (downtime itself is not counted:
no stretch covers it).

Periods are `gpu_cost_post_s` long (a minute by default; a simulation posts hours), on a grid from
the epoch, so none crosses midnight UTC. Within a UTC day each stretch's cost is rounded down once
from its start in that day (a period's amount is the difference of two such running figures), so a
day's postings sum exactly to what the meter says that day cost: the console's GPU cost of today.

Each transfer's key is `gpucost:{start_us:016d}:{end_us:016d}:{host_id}` (UNIQUE in the ledger:
a period is never posted twice), sorted by time, so a day's postings and the last one posted are
range reads of the key's index; its ref names the models the host served in the period, comma
separated: as the meter's ticks saw them, or, for a period of a run that ended before posting it,
as its usage events name them (else the models the host serves now); none: it served nothing.
The cost is the provider's to be paid:
`provider:{provider}:payable`; hosts of the operator's own (provider `ssh` or `owned`) post to
`provider:owned:payable`, because the console's profit already subtracts the cost the operator
set for them, and the ledger must say the same. Community hosts cost 0 (their share of each request
is posted by the settlement), so nothing is posted for them; a rate the operator gave one anyway
is posted like any other, since the console counts it too.

One poster per database: with several `serve` replicas on one PostgreSQL, each meters its own
hosts' stretches, and a second poster would not know the first's open ones.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.fleet.registry import Fleet
from backend.ledger import chart
from backend.ledger.errors import IdempotencyConflict
from backend.ledger.service import Ledger
from backend.ledger.tables import LedgerTransfer, UsageEvent
from backend.metrics.gpu_cost import HOUR_US, GpuCostMeter, Stretch
from backend.runtime.clock import Clock
from backend.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

CODE = "gpu_cost"
PREFIX = "gpucost:"
DAY_US = 86_400_000_000
_LOWEST, _HIGHEST = f"{PREFIX}{0:016d}", f"{PREFIX}{10**16 - 1:016d}"
OWNED_PROVIDERS = ("ssh", "owned")  # machines of the operator's: their cost is what the operator set


def period_key(start_us: int, end_us: int, host_id: str) -> str:
    return f"{PREFIX}{start_us:016d}:{end_us:016d}:{host_id}"


def parse_key(key: str) -> tuple[int, int, str]:
    """(start, end, host id) of a posting's key."""
    start, end, host_id = key.removeprefix(PREFIX).split(":", 2)
    return int(start), int(end), host_id


def key_range(since_us: int, until_us: int) -> tuple[str, str]:
    """Keys of the periods starting in [since, until): the bounds of a range read."""
    return f"{PREFIX}{since_us:016d}", f"{PREFIX}{until_us:016d}"


def payable_provider(provider: str) -> str:
    return "owned" if provider in OWNED_PROVIDERS else provider


REF_CHARS = 1000  # what the ledger takes in a transfer's ref


def models_ref(models: set[str] | None) -> str | None:
    """The models, comma separated in name order; as many as a ref holds (a host serving more than
    thirty-odd models at once is not one we have seen: the rest of its cost goes to the first)."""
    if not models:
        return None
    ref = ""
    for m in sorted(models):
        if len(ref) + len(m) + 1 > REF_CHARS:
            log.warning("GPU cost ref cut at %d characters: %d models", REF_CHARS, len(models))
            break
        ref = f"{ref},{m}" if ref else m
    return ref or None


def ref_models(ref: str | None) -> list[str]:
    return ref.split(",") if ref else []


def stretch_cost(s: Stretch, since_us: int, until_us: int) -> int:
    """What `s` cost in [since, until), both in one UTC day: the difference of its running cost
    from its start in that day (rounded down), so a day's periods sum to the meter's figure."""
    if not s.cost_per_hour:
        return 0
    anchor = max(s.started_us, since_us - since_us % DAY_US)
    if s.ended_us <= anchor:
        return 0

    def running(at: int) -> int:
        return (min(max(at, anchor), s.ended_us) - anchor) * s.cost_per_hour // HOUR_US

    return running(until_us) - running(since_us)


def period_costs(stretches: list[Stretch], since_us: int, until_us: int) -> dict[str, int]:
    """nano-USD per host over one period (within a UTC day)."""
    out: dict[str, int] = {}
    for s in stretches:
        if s.started_us < until_us and s.ended_us > since_us:
            cost = stretch_cost(s, since_us, until_us)
            if cost:
                out[s.host_id] = out.get(s.host_id, 0) + cost
    return out


@dataclass(frozen=True, slots=True)
class Posted:
    """The last period posted: the next starts at its end."""

    start_us: int
    end_us: int


class GpuCostLedger:
    def __init__(self, meter: GpuCostMeter, ledger: Ledger, fleet: Fleet, engine: AsyncEngine, *,
                 post_s: int = 60, clock: Clock, supervisor: Supervisor | None = None) -> None:
        if post_s <= 0 or (DAY_US // 1_000_000) % post_s:
            raise ValueError(f"gpu_cost_post_s must divide a day (86400 s), got {post_s}")
        self.meter, self.ledger, self.fleet, self.engine, self.clock = meter, ledger, fleet, engine, clock
        self.period_us = post_s * 1_000_000
        self._posted_through: int | None = None  # the end of the last period posted; None: not read yet
        self._accounts: set[str] = set()
        self._lock = asyncio.Lock()
        self.transfers = 0  # transfers this poster made (replays of earlier ones not counted)
        if supervisor is not None:
            supervisor.every("metrics.gpu_cost_ledger", self._run, post_s, after=("metrics.gpu_cost",),
                             describe=f"posts rented and owned GPU time to the ledger every {post_s:g}s")

    # ------------------------------------------------------------------ where to start
    async def last_posted(self) -> Posted | None:
        """The latest period in the ledger (the largest key: keys sort by start, then end)."""
        t = LedgerTransfer.__table__
        q = (select(t.c.key).where(t.c.key >= _LOWEST, t.c.key <= _HIGHEST)
             .order_by(t.c.key.desc()).limit(1))
        async with self.engine.connect() as conn:
            key = (await conn.execute(q)).scalar()
        if key is None:
            return None
        start, end, _ = parse_key(key)
        return Posted(start, end)

    async def _resume_point(self, now: int) -> int:
        last = await self.last_posted()
        if last is None:
            # The first run: from the start of today (UTC), so that today's profit is whole in the
            # ledger; older GPU time stays with the meter alone.
            return now - now % DAY_US
        # Periods are posted one after the other, each whole before the next begins, so only the
        # last can be partial (a crash between its hosts' transfers): post it again (a replay of
        # what is there changes nothing) and go on from its end.
        stretches, _ = await self.meter.persisted_stretches(last.start_us, last.end_us)
        await self._post_period(last.start_us, last.end_us, stretches)
        return last.end_us

    # ------------------------------------------------------------------ posting
    async def _run(self) -> None:
        # The loop's run returns nothing: a number would tell the supervisor when to run next.
        await self.post_due()

    async def post_due(self, *, through_last_tick: bool = False) -> int:
        """Post every whole period up to where the meter's written stretches are final (at most
        `gpu_cost_persist_s` behind; `through_last_tick` writes the open ones first, so up to the
        meter's last tick). Returns the number of transfers posted."""
        async with self._lock:
            now = self.clock.now_us()
            if self._posted_through is None:
                self._posted_through = await self._resume_point(now)
            since = self._posted_through
            if not through_last_tick and self._floor(min(now, self.meter.final_us())) <= since:
                return 0  # nothing final yet since the last period: no database read
            stretches, final = await self.meter.persisted_stretches(since, now, write_open=through_last_tick)
            until = self._floor(min(now, final))
            before = self.transfers
            while since < until:
                end = min(self._floor(since) + self.period_us, until)
                await self._post_period(since, end, stretches)
                since = self._posted_through = end
            self.meter.forget_served(since)
            return self.transfers - before

    def _floor(self, us: int) -> int:
        return us - us % self.period_us

    async def _post_period(self, start: int, end: int, stretches: list[Stretch]) -> None:
        costs = period_costs(stretches, start, end)
        if not costs:
            return
        hosts = {h.id: h for h in self.fleet.hosts()}
        missing = [h for h in costs if self.meter.served(h, start, end) is None]
        guessed = await self._served_by_usage(missing, start, end) if missing else {}
        for host_id, amount in sorted(costs.items()):
            host = hosts.get(host_id)
            provider = payable_provider(host.provider if host is not None else "unknown")
            account = chart.provider_account(provider)
            if account not in self._accounts:
                await self.ledger.open_account(account, chart.Kind.PROVIDER_PAYABLE, owner=provider)
                self._accounts.add(account)
            # What the meter's ticks saw; else (a period of a previous run) what its usage events name;
            # else what the host serves now (an agent comes back with the models it had).
            models = self.meter.served(host_id, start, end) or guessed.get(host_id) or (
                set(host.replicas) if host is not None else None)
            # One after the other: a transfer's idempotency check reads the database, and concurrent
            # reads cost more than they save here (measured: 0.6 ms a transfer, 1.8 ms gathered).
            await self._post(period_key(start, end, host_id), account, amount, models_ref(models))

    async def _post(self, key: str, account: str, amount: int, ref: str | None) -> None:
        try:
            result = await self.ledger.transfer(key, chart.GPU_COST, account, amount, code=CODE, ref=ref)
        except IdempotencyConflict as exc:
            # Posted before a crash, when the models were known from the meter's ticks; the period
            # posted again after it sees them from the usage events. The amount is the same: the
            # stretches were final both times. Keep what was posted.
            log.info("GPU cost %s was posted before (kept as it was): %s", key, exc)
            return
        if not result.replayed:
            self.transfers += 1

    async def _served_by_usage(self, host_ids: list[str], start: int, end: int) -> dict[str, set[str]]:
        """The models each host's usage events name in [start, end): what a period the meter did
        not watch (before a restart) is attributed to."""
        t = UsageEvent.__table__
        q = (select(t.c.host_id, t.c.model).where(t.c.created_us >= start, t.c.created_us < end,
                                                   t.c.host_id.in_(host_ids))
             .group_by(t.c.host_id, t.c.model))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out: dict[str, set[str]] = {}
        for host_id, model in rows:
            out.setdefault(host_id, set()).add(model)
        return out
