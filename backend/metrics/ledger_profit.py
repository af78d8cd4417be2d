"""Profit per model and UTC day, from the ledger alone: revenue, host shares and channel fees
(OpenRouter's) from the usage events (written in the same transaction as their transfers), GPU cost from the `gpu_cost`
transfers (gpu_cost_ledger.py), split among the models their ref names.

A host's period that served several models is split evenly among them (the first, in name order,
takes the remainder of the division, so the parts add up to the transfer); one that served none
counts against no model (`model` None: GPU time nobody used)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.ledger.tables import LedgerTransfer, UsageEvent
from backend.metrics.gpu_cost_ledger import CODE, DAY_US, key_range, parse_key, ref_models


@dataclass(slots=True)
class ModelDay:
    day: str  # "2026-03-01" (UTC)
    model: str | None  # None: GPU time of hosts that served no model
    requests: int = 0
    revenue: int = 0  # nano-USD charged to clients
    host_shares: int = 0  # nano-USD owed to community hosts for those requests
    gpu_cost: int = 0  # nano-USD of rented and owned GPU time
    fees: int = 0  # nano-USD owed to the channel requests came through (OpenRouter's fee)

    @property
    def profit(self) -> int:
        return self.revenue - self.host_shares - self.gpu_cost - self.fees


def day_of(us: int) -> str:
    return dt.datetime.fromtimestamp((us - us % DAY_US) / 1_000_000, tz=dt.UTC).date().isoformat()


def split(amount: int, models: list[str]) -> list[tuple[str | None, int]]:
    """`amount` shared evenly among `models`, exactly (the first takes the remainder)."""
    if not models:
        return [(None, amount)]
    models = sorted(set(models))
    part, rest = divmod(amount, len(models))
    return [(m, part + (rest if i == 0 else 0)) for i, m in enumerate(models)]


async def profit_by_model_and_day(engine: AsyncEngine, since_us: int, until_us: int) -> list[ModelDay]:
    """Each (day, model) with anything in [since, until): requests settled then, and GPU periods
    that began then. Sorted by day, then model (None last)."""
    u, t = UsageEvent.__table__, LedgerTransfer.__table__
    day = (u.c.created_us - u.c.created_us % DAY_US).label("day")
    usage = (select(day, u.c.model, func.sum(u.c.requests), func.sum(u.c.charged), func.sum(u.c.host_share),
                    func.sum(u.c.fee))
             .where(u.c.created_us >= since_us, u.c.created_us < until_us)
             .group_by(day, u.c.model))
    low, high = key_range(since_us, until_us)
    gpu = select(t.c.key, t.c.amount, t.c.ref).where(t.c.key >= low, t.c.key < high, t.c.code == CODE)
    rows: dict[tuple[str, str | None], ModelDay] = {}

    def row(d: str, model: str | None) -> ModelDay:
        return rows.setdefault((d, model), ModelDay(d, model))

    async with engine.connect() as conn:
        for d, model, requests, charged, shares, fees in (await conn.execute(usage)).all():
            r = row(day_of(int(d)), model)
            r.requests += int(requests or 0)
            r.revenue += int(charged or 0)
            r.host_shares += int(shares or 0)
            r.fees += int(fees or 0)
        for key, amount, ref in (await conn.execute(gpu)).all():
            start, _, _ = parse_key(key)
            for model, part in split(amount, ref_models(ref)):
                row(day_of(start), model).gpu_cost += part
    return sorted(rows.values(), key=lambda r: (r.day, r.model is None, r.model or ""))
