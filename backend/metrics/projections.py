"""Live projections: today's and this month's money so far and projected to the end of the period,
each served model's break-even utilization on its current hosts, progress against the daily
profit target. What GET /admin/projections answers and the console's overview shows.

So far: revenue, host payouts and OpenRouter's fees are the ledger's usage events (`usage_by`, the same query as the
admin API's usage report and the overview's "today"), GPU cost is the GPU cost meter's; so the
projections agree with the ledger to the nano-dollar.

Projected = so far + a rate x the time left in the period (UTC), in integer nano-USD:
- the day: revenue and payouts at their rate over the last hour, GPU cost at the connected hosts'
  cost per hour now. Demand moves through the day, so the last hour is the best guess of the next
  ones, and it is what the operator can act on now (a price, a host); the hosts bill their rate
  whether busy or not, so what they cost now is known, not estimated.
- the month: the month so far divided by the time of it observed, for all three. The rest of a
  month holds whole days and nights: an hour's rate (a peak, or a night) would be multiplied by
  weeks, while the month's average already holds the daily (and, later, weekly) shape.
A rate divides by the time observed: from the earliest of the backend's start, the ledger's first
usage event and the meter's first stretch, never before; a backend running for 5 minutes rests
its projection on 5 minutes (observed_s says so, and the console marks it tentative).

The month before today cannot change (usage events are immutable and stamped when they settle), so
its sums are read once per day and kept: a refresh reads only today's and the last hour's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from backend.catalogue import Catalogue
from backend.catalogue.capacity import Capacity, break_even_utilization, replica_capacity, revenue_per_s_at_full
from backend.fleet.registry import HostState, Replica
from backend.fleet.tables import HostUptime
from backend.ledger.reports import UsageRow, usage_by
from backend.ledger.settlement_policy import BPS
from backend.ledger.tables import UsageEvent
from backend.metrics.gpu_cost import HOUR_US
from backend.metrics.load import LoadTracker, replica_slots, replica_utilization
from backend.metrics.report import DAY_US, MetricsReport
from backend.wire.projections import ModelBreakEvenOut, PeriodProjectionOut, ProjectionsOut

DEFAULT_MIX = (400.0, 200.0)  # mean prompt and completion tokens of a request, when none was served today
# A day ended this long ago has surely been committed by the ledger writer (a settlement is stamped
# before its group commit): only then are its sums kept.
SETTLED_AFTER_US = 60_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Sums:
    revenue: int = 0
    payouts: int = 0
    fees: int = 0  # OpenRouter's, on the traffic it brought

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.revenue + other.revenue, self.payouts + other.payouts, self.fees + other.fees)


def sums(rows: list[UsageRow]) -> Sums:
    return Sums(sum(r.charged for r in rows), sum(r.host_share for r in rows), sum(r.fee for r in rows))


def _us(when: dt.datetime) -> int:
    return (when - _EPOCH) // dt.timedelta(microseconds=1)  # exact: no float seconds


def month_bounds(now_us: int) -> tuple[int, int]:
    """[start, end) of the UTC calendar month holding now_us, in µs."""
    day = (_EPOCH + dt.timedelta(microseconds=now_us)).date()
    start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=dt.UTC)
    return _us(start), _us(end)


def project(so_far: int, window_amount: int, observed_us: int, left_us: int) -> int:
    """so far + the window's amount per µs observed x the µs left (rounded down); nothing added
    when nothing was observed."""
    return so_far + (window_amount * left_us // observed_us if observed_us > 0 else 0)


class Projections:
    def __init__(self, report: MetricsReport, load: LoadTracker | None, catalogue: Catalogue) -> None:
        self.report, self.load, self.catalogue = report, load, catalogue
        self.engine, self.meter, self.fleet = report.engine, report.meter, report.fleet
        self._past: tuple[int, int, Sums] | None = None  # (month start, day start, sums between them)

    async def out(self, now: int, prices: Mapping[str, tuple[int, int]], target_nano: int) -> ProjectionsOut:
        """`prices`: model -> (prompt, completion) nano-USD per 1M tokens now (the pricer's quotes,
        handed in from above: pricing sits above metrics)."""
        first = min(await self.first_observed_us(), now)
        day_start = now - now % DAY_US
        today_rows = await usage_by(self.engine, "model", day_start, now + 1)
        today = sums(today_rows)
        cost_today = await self._cost(day_start, now)

        # The day: the last hour's revenue and payouts, the hosts' cost per hour now.
        hour_since = min(max(now - HOUR_US, first), now)
        hour_us = now - hour_since
        hour = sums(await usage_by(self.engine, "model", hour_since, now + 1)) if hour_us > 0 else Sums()
        day_left = day_start + DAY_US - now
        rate_now = sum(self.meter.rate_now().values())
        day = _period("day", day_start, day_start + DAY_US, now, today, cost_today, "last_hour", hour_since,
                      HOUR_US, project(today.revenue, hour.revenue, hour_us, day_left),
                      project(today.payouts, hour.payouts, hour_us, day_left),
                      cost_today + rate_now * day_left // HOUR_US, project(today.fees, hour.fees, hour_us, day_left))

        # The month: its average so far, all three.
        month_start, month_end = month_bounds(now)
        month = await self._before_today(month_start, day_start, now) + today
        cost_month = await self._cost(month_start, now)
        month_since = min(max(month_start, first), now)
        seen_us, month_left = now - month_since, month_end - now
        month_out = _period("month", month_start, month_end, now, month, cost_month, "period_average", month_since,
                            now - month_start, project(month.revenue, month.revenue, seen_us, month_left),
                            project(month.payouts, month.payouts, seen_us, month_left),
                            project(cost_month, cost_month, seen_us, month_left),
                            project(month.fees, month.fees, seen_us, month_left))

        progress = projected = None
        if target_nano > 0:
            progress = round(day.profit_nano / target_nano, 4)
            projected = round(day.projected_profit_nano / target_nano, 4)
        return ProjectionsOut(now, day, month_out, target_nano, progress, projected,
                              self.break_even(prices, today_rows))

    # ------------------------------------------------------------------ break-even
    def break_even(self, prices: Mapping[str, tuple[int, int]], today_rows: list[UsageRow]) -> list[ModelBreakEvenOut]:
        """Per model served on connected hosts: the utilization at which its replicas' earnings at
        its price now (net of community hosts' shares) pay its share of their hourly cost, with
        the capacity model (backend/catalogue/capacity.py) measured in today's request mix."""
        mixes = {r.group: r for r in today_rows}
        by_model: dict[str, list[Replica]] = {}
        for h in self.fleet.hosts():
            if h.registered and h.state != "removed":
                for model, r in h.replicas.items():
                    by_model.setdefault(model, []).append(r)
        out = []
        for model in sorted(by_model):
            reps = by_model[model]
            prompt_price, completion_price = prices.get(model, (0, 0))
            mean_prompt, mean_completion, mix_from = _mix(mixes.get(model))
            cost = sum(_cost_share(r.host) for r in reps)
            full_per_s, notes = 0.0, []
            if model not in prices:
                notes.append(f"{model} has no price (not in the catalogue)")
            for r in reps:
                cap, why = self.capacity(r)
                if cap is None:
                    notes.append(why)
                    continue
                kept = (BPS - r.host.payout_share_bps) / BPS  # a community host's share is not ours
                full_per_s += kept * revenue_per_s_at_full(cap, mean_prompt, mean_completion,
                                                           prompt_price, completion_price)
            known = not notes
            be = break_even_utilization(cost, full_per_s) if known else None
            out.append(ModelBreakEvenOut(
                model=model, replicas=len(reps), hosts=sorted(r.host.id for r in reps), gpu_cost_per_h_nano=cost,
                prompt_per_mtok_nano=prompt_price, completion_per_mtok_nano=completion_price,
                mean_prompt_tokens=round(mean_prompt, 1), mean_completion_tokens=round(mean_completion, 1),
                mix_from=mix_from, revenue_per_h_at_full_nano=int(full_per_s * 3600) if known else None,
                break_even_utilization=None if be is None else round(be, 4),
                utilization=self.utilization_now(model), note="; ".join(notes)))
        return out

    def capacity(self, r: Replica) -> tuple[Capacity | None, str]:
        return measured_capacity(self.catalogue, r)

    def utilization_now(self, model: str) -> float | None:
        """The mean engine load of the model's routable replicas now (the load tracker's measure)."""
        if self.load is None:
            return None
        utils = [u for u in (replica_utilization(r) for r in self.load.routable(model)) if u is not None]
        return round(sum(utils) / len(utils), 4) if utils else None

    # ------------------------------------------------------------------ reading
    async def first_observed_us(self) -> int:
        """The earliest instant anything was observed: this backend's start, the ledger's first
        usage event, the meter's first stretch (one index read and a small table)."""
        u, h = UsageEvent.__table__, HostUptime.__table__
        async with self.engine.connect() as conn:
            first_usage = (await conn.execute(select(func.min(u.c.created_us)))).scalar()
            first_uptime = (await conn.execute(select(func.min(h.c.started_us)))).scalar()
        return min(x for x in (self.report.started_us, first_usage, first_uptime) if x is not None)

    async def _cost(self, since: int, now: int) -> int:
        return sum((await self.meter.cost(since, now)).values()) if now > since else 0

    async def _before_today(self, month_start: int, day_start: int, now: int) -> Sums:
        if day_start <= month_start:
            return Sums()
        if self._past is not None and self._past[:2] == (month_start, day_start):
            return self._past[2]
        past = sums(await usage_by(self.engine, "model", month_start, day_start))
        if now - day_start >= SETTLED_AFTER_US:
            self._past = (month_start, day_start, past)
        return past


def _cost_share(host: HostState) -> int:
    """A host's cost per hour split evenly among the models it serves (as the overview's rates do)."""
    return host.cost_per_hour // max(len(host.replicas), 1)


def _mix(row: UsageRow | None) -> tuple[float, float, str]:
    """Mean prompt and completion tokens of today's answered requests of a model, else the default."""
    answered = 0 if row is None else row.requests - row.failed
    if row is None or answered <= 0:
        return DEFAULT_MIX[0], DEFAULT_MIX[1], "default"
    return row.prompt_tokens / answered, row.completion_tokens / answered, "today"


def _period(period, since: int, until: int, now: int, so_far: Sums, cost: int, basis, rate_since: int,
            window_us: int, revenue: int, payouts: int, gpu_cost: int, fees: int) -> PeriodProjectionOut:
    return PeriodProjectionOut(
        period=period, since_us=since, until_us=until, now_us=now, revenue_nano=so_far.revenue,
        payouts_nano=so_far.payouts, gpu_cost_nano=cost,
        profit_nano=so_far.revenue - so_far.payouts - so_far.fees - cost,
        projected_revenue_nano=revenue, projected_payouts_nano=payouts, projected_gpu_cost_nano=gpu_cost,
        projected_profit_nano=revenue - payouts - fees - gpu_cost, basis=basis, rate_since_us=rate_since,
        rate_window_s=window_us / 1_000_000, observed_s=(now - rate_since) / 1_000_000,
        left_s=(until - now) / 1_000_000, fees_nano=so_far.fees, projected_fees_nano=fees)


def measured_capacity(catalogue: Catalogue, r: Replica) -> tuple[Capacity | None, str]:
    """One replica's capacity, with the slots its engine runs (what its utilization is measured
    against): the host's measured single-stream speed when its check gave one, else the
    catalogue's for its GPUs. None, and why, when neither is known. (The break-even here and the
    OpenRouter listing's capacity_tpm read it.)"""
    slots = replica_slots(r)
    if r.check is not None and r.check.decode_tps:
        return Capacity(decode_tps=r.check.decode_tps, slots=slots), ""
    entry = catalogue.model_by_id.get(r.model)
    gpu = catalogue.gpu_by_id.get(r.host.gpu_type or "")
    if entry is None:
        return None, f"{r.model} is not in the catalogue"
    if gpu is None:
        return None, f"{r.host.name}: GPU {r.host.gpu_type or 'not reported'} unknown to the catalogue"
    cap = replica_capacity(entry, gpu, max(len(r.host.gpus), 1), slots=slots)
    if cap is None:
        return None, f"{r.host.name}: {r.model} does not fit its GPUs by the catalogue"
    return cap, ""
