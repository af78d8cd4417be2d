"""Usage reports from the usage events (admin API, console)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
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


async def usage_by(engine: AsyncEngine, group_by: str, since_us: int, until_us: int) -> list[UsageRow]:
    if group_by not in GROUPS:
        raise FieldError("group_by", f"must be one of {', '.join(GROUPS)}, got {group_by!r}")
    if until_us <= since_us:
        raise FieldError("until_us", "must be after since_us")
    t = UsageEvent.__table__
    col = {"client": t.c.client_id, "model": t.c.model, "host": t.c.host_id}[group_by]
    q = (
        select(
            col,
            func.coalesce(func.sum(t.c.requests), 0),  # a row may stand for several (a simulation's)
            func.sum(case((t.c.status == "failed", t.c.requests), else_=0)),
            func.coalesce(func.sum(t.c.prompt_tokens), 0),
            func.coalesce(func.sum(t.c.completion_tokens), 0),
            func.coalesce(func.sum(t.c.charged), 0),
            func.coalesce(func.sum(t.c.host_share), 0),
        )
        .where(t.c.created_us >= since_us, t.c.created_us < until_us)
        .group_by(col)
        .order_by(func.sum(t.c.charged).desc())
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [UsageRow(r[0], int(r[1]), int(r[2] or 0), int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in rows]
