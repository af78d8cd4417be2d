"""Usage reports from the usage events (admin API, console)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BigInteger, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.field_errors import FieldError
from backend.ledger.tables import UsageEvent

GROUPS = ("client", "model", "host")


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | None
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    charged: int
    host_share: int
    fee: int = 0  # owed to the channel the requests came through (OpenRouter's fee)


async def usage_by(engine: AsyncEngine, group_by: str, since_us: int, until_us: int) -> list[UsageRow]:
    if group_by not in GROUPS:
        raise FieldError("group_by", f"must be one of {', '.join(GROUPS)}, got {group_by!r}")
    if until_us <= since_us:
        raise FieldError("until_us", "must be after since_us")
    t = UsageEvent.__table__
    col = {"client": t.c.client_id, "model": t.c.model, "host": t.c.host_id}[group_by]
    q = (
        select(col, *_sums(t))
        .where(t.c.created_us >= since_us, t.c.created_us < until_us)
        .group_by(col)
        .order_by(func.sum(t.c.charged).desc())
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [_row(r[0], r) for r in rows]


def _sums(t) -> list:
    """What each report row sums, after its group column."""
    return [
        func.coalesce(func.sum(t.c.requests), 0),  # a row may stand for several (a simulation's)
        func.sum(case((t.c.status == "failed", t.c.requests), else_=0)),
        func.coalesce(func.sum(t.c.prompt_tokens), 0),
        func.coalesce(func.sum(t.c.completion_tokens), 0),
        func.coalesce(func.sum(t.c.charged), 0),
        func.coalesce(func.sum(t.c.host_share), 0),
        func.coalesce(func.sum(t.c.fee), 0),
    ]


def _row(group: str | None, r) -> UsageRow:
    return UsageRow(group, int(r[1]), int(r[2] or 0), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]))


CLIENT_GROUPS = ("model", "day", "key")
DAY_US = 86_400_000_000


async def client_usage_by(engine: AsyncEngine, client_id: str, group_by: str, since_us: int,
                          until_us: int) -> list[UsageRow]:
    """One client's usage (what GET /v1/usage shows it) per model, UTC day ("YYYY-MM-DD") or API key
    (its id; None for usage recorded without a key). Days in order, the others by charge, largest
    first. The time index narrows the scan to the range; the client is filtered within it (no
    per-client index: every index costs each request at commit, see UsageEvent)."""
    if group_by not in CLIENT_GROUPS:
        raise FieldError("group_by", f"must be one of {', '.join(CLIENT_GROUPS)}, got {group_by!r}")
    if until_us <= since_us:
        raise FieldError("until_us", "must be after since_us")
    t = UsageEvent.__table__
    # The day as an integer (days since the epoch, UTC). A literal divisor, not a bound parameter:
    # PostgreSQL would see the SELECT's and the GROUP BY's parameters as two different expressions.
    day = (t.c.created_us // literal_column(str(DAY_US), BigInteger)).label("day")
    col = {"model": t.c.model, "day": day, "key": t.c.key_id}[group_by]
    order = [col] if group_by == "day" else [func.sum(t.c.charged).desc(), col]
    q = (
        select(col, *_sums(t))
        .where(t.c.created_us >= since_us, t.c.created_us < until_us, t.c.client_id == client_id)
        .group_by(col)
        .order_by(*order)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    if group_by == "day":
        return [_row(_utc_day(int(r[0])), r) for r in rows]
    return [_row(r[0], r) for r in rows]


def _utc_day(days: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()
