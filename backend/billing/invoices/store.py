"""Issued invoices in the database: the one transaction that numbers and inserts an invoice, and
the reads.

Numbering is gapless because the counter row (`invoice_counter`, name "invoice") is taken in the
transaction that inserts the invoice: anything that fails rolls the number back with it. Taking
the counter first also serialises two generations running at once (two backends on one
PostgreSQL, or the schedule and an operator): the second waits on the counter row, then finds the
first's invoice and answers "already issued" without using a number. UNIQUE (client, period) is
the database's last word if anything slips past that."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.billing.invoice_tables import Invoice, InvoiceCounter, InvoiceLine
from backend.billing.invoices.period import utc_at
from backend.db.engine import IMMEDIATE

COUNTER = "invoice"
_I = Invoice.__table__
_L = InvoiceLine.__table__
_N = InvoiceCounter.__table__


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """An invoice and its lines, as stored (or, in a dry run, as they would be)."""

    head: Invoice
    lines: list[InvoiceLine]


def invoice_number(prefix: str, issued_us: int, seq: int) -> str:
    """PREFIX-YYYY-NNNNNN: the year of issue, the one sequence's number."""
    return f"{prefix}-{utc_at(issued_us).year}-{seq:06d}"


class AlreadyIssued(Exception):
    def __init__(self, number: str) -> None:
        super().__init__(number)
        self.number = number


async def ensure_counter(engine: AsyncEngine) -> None:
    """The counter row, created once (a concurrent creation by another backend is fine)."""
    async with engine.connect() as conn:
        if (await conn.execute(select(_N.c.name).where(_N.c.name == COUNTER))).first() is not None:
            return
        try:
            await conn.execute(insert(_N).values(name=COUNTER, last=0))
            await conn.commit()
        except IntegrityError:
            await conn.rollback()


async def last_number(conn: AsyncConnection) -> int:
    return (await conn.execute(select(_N.c.last).where(_N.c.name == COUNTER))).scalar() or 0


async def issued_for(conn: AsyncConnection, period: str) -> dict[str, str]:
    """client id -> invoice number, for the invoices already issued for a period."""
    q = select(_I.c.client_id, _I.c.number).where(_I.c.period == period)
    return {r.client_id: r.number for r in (await conn.execute(q)).all()}


def _head_values(head: Invoice) -> dict:
    return {c.name: getattr(head, c.name) for c in _I.columns if c.name != "id"}


def _line_values(line: InvoiceLine, invoice_id: int) -> dict:
    values = {c.name: getattr(line, c.name) for c in _L.columns if c.name != "id"}
    values["invoice_id"] = invoice_id
    return values


async def issue(engine: AsyncEngine, head: Invoice, lines: list[InvoiceLine], prefix: str) -> IssuedInvoice:
    """Number and insert one invoice in one transaction. `head.seq` and `number` are set here.
    Raises AlreadyIssued (nothing written, no number used) if the client has one for the period."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**IMMEDIATE)  # SQLite: the write lock from BEGIN
        try:
            async with conn.begin():
                seq = (await conn.execute(update(_N).where(_N.c.name == COUNTER).values(last=_N.c.last + 1)
                                          .returning(_N.c.last))).scalar()
                if seq is None:
                    raise RuntimeError("the invoice counter row is missing (ensure_counter was not run)")
                q = select(_I.c.number).where(_I.c.client_id == head.client_id, _I.c.period == head.period)
                existing = (await conn.execute(q)).scalar()
                if existing is not None:
                    raise AlreadyIssued(existing)  # rolls the counter back
                head.seq, head.number = seq, invoice_number(prefix, head.issued_us, seq)
                head.line_count = len(lines)  # the database takes no line beyond it (migration 0013)
                invoice_id = (await conn.execute(insert(_I).values(**_head_values(head)).returning(_I.c.id))).scalar()
                if lines:
                    await conn.execute(insert(_L), [_line_values(line, invoice_id) for line in lines])
        except IntegrityError:
            async with engine.connect() as again:
                q = select(_I.c.number).where(_I.c.client_id == head.client_id, _I.c.period == head.period)
                existing = (await again.execute(q)).scalar()
            if existing is None:
                raise
            raise AlreadyIssued(existing) from None
    stored = await read(engine, head.number)
    assert stored is not None
    return stored


def _invoice(row) -> Invoice:
    return Invoice(**dict(row._mapping))


def _line(row) -> InvoiceLine:
    return InvoiceLine(**dict(row._mapping))


async def read(engine: AsyncEngine, number: str, client_id: str | None = None) -> IssuedInvoice | None:
    """An invoice by number (and, given, only if it is that client's) with its lines in order."""
    async with engine.connect() as conn:
        q = select(_I).where(_I.c.number == number)
        if client_id is not None:
            q = q.where(_I.c.client_id == client_id)
        row = (await conn.execute(q)).first()
        if row is None:
            return None
        lines = (await conn.execute(select(_L).where(_L.c.invoice_id == row.id).order_by(_L.c.position))).all()
    return IssuedInvoice(_invoice(row), [_line(r) for r in lines])


async def listing(engine: AsyncEngine, *, period: str | None = None, client_id: str | None = None,
                  limit: int = 500) -> list[Invoice]:
    """Invoices, newest number first."""
    q = select(_I).order_by(_I.c.seq.desc()).limit(limit)
    if period is not None:
        q = q.where(_I.c.period == period)
    if client_id is not None:
        q = q.where(_I.c.client_id == client_id)
    async with engine.connect() as conn:
        return [_invoice(r) for r in (await conn.execute(q)).all()]

