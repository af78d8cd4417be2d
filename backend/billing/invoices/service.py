"""Monthly invoices: one per client per calendar month (UTC), for every client with activity in the
month (usage, a payment, a grant, a refund or dispute) or a balance other than zero.

Issued automatically on the 2nd at 00:00 UTC for the previous month (a calendar schedule of the
supervisor, caught up after downtime: see run_scheduled), or by hand (POST /admin/invoicing/generate,
`tokenmill invoices generate`), with seed 003's dry runs:
- "all": nothing is written; every invoice is computed and shown as it would be issued;
- "validate": only looks for invoices already issued for the month (duplicates) and names the
  clients a full run would invoice;
- "none": the full run: issues what is missing, reports what was already there.
A month still in progress is refused: its ledger is not final.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.invoice_tables import Invoice, InvoiceLine
from backend.billing.invoices import ledger_reads as reads
from backend.billing.invoices import store
from backend.billing.invoices.cents import usd
from backend.billing.invoices.period import Period, utc_at
from backend.billing.invoices.statement import Draft, LedgerFigures, Move, StatementError, UsageGroup, draft
from backend.billing.invoices.store import IssuedInvoice
from backend.field_errors import FieldError
from backend.ledger.service import Ledger
from backend.runtime.bus import EventBus
from backend.runtime.clock import REAL_CLOCK, Clock
from backend.runtime.schedules import Monthly
from backend.runtime.supervisor import Supervisor
from backend.runtime.tables import ScheduleRun
from backend.settings import BillingSettings

log = logging.getLogger(__name__)

DryRun = Literal["all", "validate", "none"]
DRY_RUNS: tuple[str, ...] = ("all", "validate", "none")
SCHEDULE = "billing.invoices"
RULE = Monthly(day=2, hour=0, minute=0)
CATCH_UP_MONTHS = 12  # the most months one scheduled run invoices: its own and those a downtime skipped
# A failure to issue that a later try may not meet (the database locked or out of reach): the
# scheduled run raises after its months, so the supervisor runs the same instant again.
TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class ClientRef:
    client_id: str
    client_name: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    client_id: str
    client_name: str
    number: str


@dataclass(frozen=True, slots=True)
class Failure:
    client_id: str
    client_name: str
    reason: str
    transient: bool = False  # the database failed, not the client's month: the schedule tries again


class RunIncomplete(Exception):
    """A scheduled run that could not issue every invoice for a reason that may pass: raised so the
    supervisor does not record the instant as done and runs it again after its backoff."""


@dataclass(slots=True)
class RunResult:
    period: Period
    dry_run: str
    issued: list[IssuedInvoice] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    pending: list[ClientRef] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.dry_run == "none"


@dataclass(frozen=True, slots=True)
class _Candidate:
    client: reads.ClientRow
    usage: list[UsageGroup]
    moves: list[Move]
    figures: LedgerFigures


def _has_activity(c: _Candidate) -> bool:
    f = c.figures
    return bool(c.usage or c.moves or f.usage_charged or f.opening or f.closing)


def build(client: reads.ClientRow, period: Period, d: Draft, issued_us: int,
          billing: BillingSettings) -> tuple[Invoice, list[InvoiceLine]]:
    """The rows of an invoice not yet numbered (seq and number are set when it is issued)."""
    head = Invoice(
        seq=0, number="", client_id=client.id, client_name=client.name, period=period.label,
        period_start_us=period.start_us, period_end_us=period.end_us, issued_us=issued_us, currency="usd",
        opening_balance=d.opening, closing_balance=d.closing, usage_total=d.usage_total,
        payments_total=d.payments_total, grants_total=d.grants_total, refunds_total=d.refunds_total,
        business_name=billing.business_name, business_address=billing.business_address, line_count=len(d.lines),
    )
    lines = [InvoiceLine(invoice_id=0, position=i, kind=x.kind, description=x.description, model=x.model,
                         price_prompt_per_mtok=x.price_prompt_per_mtok,
                         price_completion_per_mtok=x.price_completion_per_mtok, requests=x.requests,
                         prompt_tokens=x.prompt_tokens, completion_tokens=x.completion_tokens,
                         occurred_us=x.occurred_us, amount=x.amount)
             for i, x in enumerate(d.lines, start=1)]
    return head, lines


def months_due(done_us: int | None, scheduled_us: int) -> list[Period]:
    """The months a scheduled run at `scheduled_us` bills, oldest first: the month before each
    instant of RULE after `done_us` (the last instant recorded as run) up to `scheduled_us`;
    always at least the month before `scheduled_us` (with no record, only that one)."""
    target = Period.containing(scheduled_us).previous()
    months: list[Period] = []
    if done_us is not None:
        at = RULE.next_after(done_us)
        while at < scheduled_us:
            months.append(Period.containing(at).previous())
            at = RULE.next_after(at)
    return [p for p in months if p < target] + [target]


class InvoiceService:
    def __init__(self, engine: AsyncEngine, billing: BillingSettings, *, clock: Clock = REAL_CLOCK,
                 bus: EventBus | None = None, ledger: Ledger | None = None) -> None:
        self.engine, self.billing, self.clock, self.bus, self.ledger = engine, billing, clock, bus, ledger
        self._lock = asyncio.Lock()  # one run at a time in this process (the database guards across processes)

    async def start(self) -> None:
        await store.ensure_counter(self.engine)

    def schedule(self, supervisor: Supervisor) -> None:
        """Register the monthly run: the 2nd at 00:00 UTC, for the month before."""
        supervisor.schedule(SCHEDULE, self.run_scheduled, RULE)

    # ------------------------------------------------------------------ generating
    async def run_scheduled(self, scheduled_us: int) -> list[RunResult]:
        """The schedule's run for the instant `scheduled_us` (the supervisor calls it before it records
        the instant as done): the month before each instant of RULE after the last one the schedule
        recorded (table schedule_run) up to `scheduled_us`, oldest first: one month normally, more
        after a downtime that spanned several 2nds (the supervisor runs only the latest missed one),
        and the same months again after a run stopped half way. At most CATCH_UP_MONTHS months in
        all (the newest; older ones are left to an operator, and an error event says which). A month
        already invoiced again is harmless: what was issued is reported as already issued.
        Raises RunIncomplete, after every month was tried, if an invoice failed for a reason that may
        pass (TRANSIENT): the instant is not recorded, so the supervisor tries again."""
        periods = months_due(await self._schedule_done(), scheduled_us)
        skipped, periods = periods[:-CATCH_UP_MONTHS], periods[-CATCH_UP_MONTHS:]
        if skipped:
            why = (f"{skipped[0].title} to {skipped[-1].title} not invoiced by the schedule (it catches up "
                   f"{CATCH_UP_MONTHS} months at most): generate them by hand")
            log.error("%s", why)
            if self.bus is not None:
                self.bus.add("invoice.run", skipped[-1].label, why, "error")
        results = [await self.generate(p, "none") for p in periods]
        retry = [f"{r.period}: {f.client_id}" for r in results for f in r.failed if f.transient]
        if retry:
            raise RunIncomplete(f"invoices not issued, to be tried again: {', '.join(retry)}")
        return results

    async def _schedule_done(self) -> int | None:
        """The last instant the schedule recorded as run (or, before any run, where it began
        counting); None if it never ran."""
        t = ScheduleRun.__table__
        async with self.engine.connect() as conn:
            return (await conn.execute(select(t.c.scheduled_us).where(t.c.name == SCHEDULE))).scalar()

    async def generate(self, period: Period, dry_run: str = "none") -> RunResult:
        if dry_run not in DRY_RUNS:
            raise FieldError("dry_run", f"must be one of {', '.join(DRY_RUNS)}, got {dry_run!r}")
        now = self.clock.now_us()
        if period.end_us > now:
            ends = utc_at(period.end_us).strftime("%Y-%m-%d %H:%M UTC")
            raise FieldError("date", f"{period.title} is not over yet (it ends {ends}): an invoice bills a "
                                     "finished month")
        async with self._lock:
            if self.ledger is not None:
                await self.ledger.flush()  # what this process settled in the month is on disk
            result = RunResult(period, dry_run)
            candidates, last = await self._candidates(period, result)
            if dry_run == "validate":
                result.pending = [ClientRef(c.client.id, c.client.name) for c in candidates]
                return result
            for c in candidates:
                try:
                    d = draft(c.usage, c.moves, c.figures)
                except StatementError as exc:
                    self._failed(result, c.client, str(exc))
                    continue
                head, lines = build(c.client, period, d, now, self.billing)
                if dry_run == "all":
                    head.seq = last + len(result.issued) + 1
                    head.number = store.invoice_number(self.billing.invoice_prefix, now, head.seq)
                    result.issued.append(IssuedInvoice(head, lines))
                    continue
                try:
                    issued = await store.issue(self.engine, head, lines, self.billing.invoice_prefix)
                except store.AlreadyIssued as exc:  # another run (another backend) got there first
                    result.duplicates.append(Duplicate(c.client.id, c.client.name, exc.number))
                    continue
                except Exception as exc:  # one client's failure does not stop the others'
                    log.exception("issuing the invoice of %s for %s failed", c.client.id, period)
                    self._failed(result, c.client, f"{type(exc).__name__}: {exc}", isinstance(exc, TRANSIENT))
                    continue
                result.issued.append(issued)
                self._issued(issued)
        if dry_run == "none" and self.bus is not None:
            level = "error" if result.failed else "info"
            self.bus.add("invoice.run", period.label, f"{period.title}: issued {len(result.issued)}, "
                         f"already issued {len(result.duplicates)}, failed {len(result.failed)}", level)
        return result

    async def _candidates(self, period: Period, result: RunResult) -> tuple[list[_Candidate], int]:
        """The clients to invoice (those already invoiced go to result.duplicates) and the counter now."""
        start, end = period.start_us, period.end_us
        out: list[_Candidate] = []
        async with self.engine.connect() as conn:
            existing = await store.issued_for(conn, period.label)
            usage = await reads.usage_of_month(conn, start, end)
            for client in await reads.clients_before(conn, end):
                if client.id in existing:
                    result.duplicates.append(Duplicate(client.id, client.name, existing[client.id]))
                    continue
                accounts = await reads.balance_accounts(conn, client.id)
                c = _Candidate(client, usage.get(client.id, []), await reads.moves(conn, accounts, start, end),
                               await reads.figures(conn, accounts, start, end))
                if _has_activity(c):
                    out.append(c)
            last = await store.last_number(conn)
        return out, last

    def _issued(self, inv: IssuedInvoice) -> None:
        if self.bus is None:
            return
        h = inv.head
        self.bus.add("invoice.issued", h.client_id,
                     f"{h.number} to {h.client_name} for {Period.parse(h.period).title}: usage {usd(h.usage_total)}, "
                     f"closing balance {usd(h.closing_balance)}")

    def _failed(self, result: RunResult, client: reads.ClientRow, reason: str, transient: bool = False) -> None:
        result.failed.append(Failure(client.id, client.name, reason, transient))
        if self.bus is not None and result.dry_run == "none":
            self.bus.add("invoice.failed", client.id,
                         f"no invoice for {client.name} for {result.period.title}: {reason}", "error")

    # ------------------------------------------------------------------ reading
    async def invoices(self, *, period: Period | None = None, client_id: str | None = None,
                       limit: int = 500) -> list[Invoice]:
        return await store.listing(self.engine, period=None if period is None else period.label,
                                   client_id=client_id, limit=limit)

    async def invoice(self, number: str, client_id: str | None = None) -> IssuedInvoice | None:
        return await store.read(self.engine, number, client_id)

    def default_period(self) -> Period:
        """The month before this one (UTC): what the schedule bills on the 2nd."""
        return Period.containing(self.clock.now_us()).previous()
