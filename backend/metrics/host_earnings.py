"""One host's earnings, from the ledger alone (GET /hosts/{id}/earnings, `tokenmill-host earnings`).

Earned: the host shares of the usage events its replicas served (written in the same transaction as
the host payable postings, which `check_invariants` ties to them), per model and UTC day. Owed: the
host payable account's posted balance. Paid: debits of that account with the payout code (billing's
host payouts post them); a payout still pending is counted as owed, not paid, until it posts.

Usage events have one index, on time (every index costs each request at commit): the window narrows
the scan, the host is filtered within it, as for a client's own usage."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BigInteger, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.ledger.errors import UnknownAccount
from backend.ledger.reports import DAY_US
from backend.ledger.service import Ledger
from backend.ledger.tables import LedgerTransfer, UsageEvent
from backend.metrics.projections import month_bounds

PAYOUT_CODE = "host_payout"  # billing's code for money paid out to a host
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class DayModel:
    day: str  # UTC, "2026-03-01"
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    earned: int  # nano-USD


@dataclass(frozen=True, slots=True)
class Earnings:
    since_us: int
    until_us: int
    today: int
    month: int
    owed: int
    paid: int
    per_day: list[DayModel]  # oldest day first, then model

    @property
    def window(self) -> int:
        return sum(r.earned for r in self.per_day)

    def per_model(self) -> list[tuple[str, int, int]]:
        """(model, requests, earned) over the window, largest earnings first."""
        sums: dict[str, list[int]] = {}
        for r in self.per_day:
            s = sums.setdefault(r.model, [0, 0])
            s[0] += r.requests
            s[1] += r.earned
        return sorted(((m, s[0], s[1]) for m, s in sums.items()), key=lambda x: (-x[2], x[0]))


def window(now_us: int, days: int) -> tuple[int, int]:
    """[since, until) for `days` UTC days ending with today: days=1 is today alone."""
    today = now_us - now_us % DAY_US
    return today - (days - 1) * DAY_US, now_us + 1


async def host_earnings(engine: AsyncEngine, ledger: Ledger, host_id: str, payable_account: str | None,
                        now_us: int, days: int) -> Earnings:
    since, until = window(now_us, days)
    month_start, _ = month_bounds(now_us)
    today_start = now_us - now_us % DAY_US
    u = UsageEvent.__table__
    day = (u.c.created_us // literal_column(str(DAY_US), BigInteger)).label("day")
    # Answered requests only: a failed request earns its host nothing (host_share 0) and was not served.
    per_day = (select(day, u.c.model, func.sum(u.c.requests), func.sum(u.c.prompt_tokens),
                      func.sum(u.c.completion_tokens), func.sum(u.c.host_share))
               .where(u.c.created_us >= since, u.c.created_us < until, u.c.host_id == host_id, u.c.status != "failed")
               .group_by(day, u.c.model).order_by(day, u.c.model))
    earned = select(func.coalesce(func.sum(u.c.host_share), 0)).where(u.c.created_us < until, u.c.host_id == host_id)
    owed = paid = 0
    async with engine.connect() as conn:
        rows = [DayModel(_day(int(d)), m, int(n or 0), int(p or 0), int(c or 0), int(s or 0))
                for d, m, n, p, c, s in (await conn.execute(per_day)).all()]
        month = int((await conn.execute(earned.where(u.c.created_us >= month_start))).scalar() or 0)
        today = int((await conn.execute(earned.where(u.c.created_us >= today_start))).scalar() or 0)
        if payable_account is not None:
            try:
                account = ledger.account(payable_account)
            except UnknownAccount:
                account = None
            if account is not None:
                owed = account.balance
                t = LedgerTransfer.__table__
                paid = int((await conn.execute(
                    select(func.coalesce(func.sum(t.c.amount), 0))
                    .where(t.c.debit_account_id == account.id, t.c.code == PAYOUT_CODE,
                           t.c.kind.in_(("posted", "post_pending"))))).scalar() or 0)
    return Earnings(since, until, today, month, owed, paid, rows)


def _day(days_since_epoch: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days_since_epoch)).isoformat()
