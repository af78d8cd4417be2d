"""Replay the last hour of usage events into LiveMetrics at start-up, so a restarted router
still shows the last hour's sparklines and percentiles."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.ledger.tables import UsageEvent
from backend.metrics.live import KEEP_MINUTES, MINUTE_US, LiveMetrics

# A bound on start-up work: at a few thousand requests a second an hour is millions of rows, and
# a restart must not take minutes; the newest rows are the ones replayed.
MAX_REPLAYED = 500_000


async def restore(engine: AsyncEngine, metrics: LiveMetrics, now_us: int) -> int:
    """Returns how many events were replayed."""
    t = UsageEvent.__table__
    since = (now_us // MINUTE_US - KEEP_MINUTES + 1) * MINUTE_US
    q = (select(t.c.model, t.c.status, t.c.prompt_tokens, t.c.completion_tokens, t.c.charged, t.c.host_share,
                t.c.started_us, t.c.first_byte_us, t.c.finished_us, t.c.requests, t.c.fee)
         .where(t.c.created_us >= since).order_by(t.c.created_us.desc()).limit(MAX_REPLAYED))
    n = 0
    async with engine.connect() as conn:
        result = await conn.stream(q)
        async for r in result:
            metrics.record(model=r[0], status=r[1], prompt_tokens=r[2], completion_tokens=r[3], charged=r[4],
                           host_share=r[5], started_us=r[6], first_byte_us=r[7], finished_us=r[8], requests=r[9],
                           fee=r[10])
            n += 1
    return n
