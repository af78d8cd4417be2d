"""What an invoice is made of, read from the ledger's tables: the clients, their usage events of a
month per model and price, and the posted transfers on their prepaid and receivable accounts.

Only posted money counts: a hold (`pending`) reserved nothing yet, and a void or an expiry moved
nothing; a hold's posting (`post_pending`) carries the amount posted."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.billing.invoices.statement import LedgerFigures, Move, UsageGroup
from backend.clients.tables import Client
from backend.ledger import chart
from backend.ledger.tables import LedgerAccount, LedgerTransfer, UsageEvent

_T = LedgerTransfer.__table__
_A = LedgerAccount.__table__
_U = UsageEvent.__table__
_C = Client.__table__
POSTED = ("posted", "post_pending")


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: str
    name: str
    created_us: int


async def clients_before(conn: AsyncConnection, end_us: int) -> list[ClientRow]:
    """Every client that existed before `end_us`, by id (the order invoices are numbered in)."""
    q = select(_C.c.id, _C.c.name, _C.c.created_us).where(_C.c.created_us < end_us).order_by(_C.c.id)
    return [ClientRow(r.id, r.name, r.created_us) for r in (await conn.execute(q)).all()]


async def usage_of_month(conn: AsyncConnection, start_us: int, end_us: int) -> dict[str, list[UsageGroup]]:
    """Each client's usage events in [start_us, end_us) per model and price: one scan of the month
    by the events' time index. Failed requests were not charged and are not billed."""
    q = (
        select(_U.c.client_id, _U.c.model, _U.c.price_prompt_per_mtok, _U.c.price_completion_per_mtok,
               func.sum(_U.c.requests), func.sum(_U.c.prompt_tokens), func.sum(_U.c.completion_tokens),
               func.sum(_U.c.charged), func.min(_U.c.created_us))
        .where(_U.c.created_us >= start_us, _U.c.created_us < end_us, _U.c.status != "failed")
        .group_by(_U.c.client_id, _U.c.model, _U.c.price_prompt_per_mtok, _U.c.price_completion_per_mtok)
    )
    out: dict[str, list[UsageGroup]] = defaultdict(list)
    for r in (await conn.execute(q)).all():
        out[r[0]].append(UsageGroup(r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]),
                                    int(r[8])))
    return out


async def balance_accounts(conn: AsyncConnection, client_id: str) -> list[int]:
    """The ids of the accounts the invoice's balance is made of: prepaid, and receivable if opened."""
    codes = (chart.client_account(client_id), chart.receivable_account(client_id))
    return [r[0] for r in (await conn.execute(select(_A.c.id).where(_A.c.code.in_(codes)))).all()]


def _signed(accounts: list[int]):
    """A transfer's effect on the balance: credited to one of the accounts adds, debited takes."""
    credit_in = case((_T.c.credit_account_id.in_(accounts), _T.c.amount), else_=0)
    debit_in = case((_T.c.debit_account_id.in_(accounts), _T.c.amount), else_=0)
    return credit_in, debit_in


def _touching(accounts: list[int]):
    return and_(_T.c.kind.in_(POSTED), or_(_T.c.debit_account_id.in_(accounts), _T.c.credit_account_id.in_(accounts)))


async def figures(conn: AsyncConnection, accounts: list[int], start_us: int, end_us: int) -> LedgerFigures:
    """The balance before start_us and before end_us, and the usage the ledger posted between."""
    if not accounts:
        return LedgerFigures(0, 0, 0)
    credit_in, debit_in = _signed(accounts)
    signed = credit_in - debit_in
    in_period = and_(_T.c.created_us >= start_us, _T.c.created_us < end_us)
    is_usage = and_(_T.c.code == "usage", _T.c.kind == "post_pending")
    q = select(
        func.coalesce(func.sum(case((_T.c.created_us < start_us, signed), else_=0)), 0),
        func.coalesce(func.sum(case((_T.c.created_us < end_us, signed), else_=0)), 0),
        func.coalesce(func.sum(case((and_(in_period, is_usage), debit_in - credit_in), else_=0)), 0),
    ).where(_touching(accounts))
    r = (await conn.execute(q)).one()
    return LedgerFigures(int(r[0]), int(r[1]), int(r[2]))


async def moves(conn: AsyncConnection, accounts: list[int], start_us: int, end_us: int) -> list[Move]:
    """The month's posted transfers on the accounts other than usage postings (payments, grants,
    refunds, disputes, receivables), with what each did to the balance."""
    if not accounts:
        return []
    credit_in, debit_in = _signed(accounts)
    q = (
        select(_T.c.key, _T.c.code, _T.c.created_us, credit_in - debit_in)
        .where(_touching(accounts), _T.c.created_us >= start_us, _T.c.created_us < end_us,
               ~and_(_T.c.code == "usage", _T.c.kind == "post_pending"))
        .order_by(_T.c.created_us, _T.c.key)
    )
    return [Move(r[0], r[1], int(r[2]), int(r[3])) for r in (await conn.execute(q)).all()]
