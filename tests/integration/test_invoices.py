"""Monthly invoices from a real ledger (a SQLite file; PostgreSQL too when TOKENMILL_TEST_DATABASE_URL
is set): a seeded month's invoice and its totals against the ledger's own figures, gapless numbers
across clients, runs and years, the database refusing to change an issued invoice, dry runs that
write nothing, two generations at once issuing once, and the monthly schedule catching up."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from backend.billing.invoice_tables import Invoice, InvoiceCounter, InvoiceLine
from backend.billing.invoices import InvoiceService, Period, store
from backend.billing.invoices.cents import ROUNDING_NOTE
from backend.billing.invoices.render_csv import render_csv
from backend.billing.invoices.service import SCHEDULE, RunIncomplete
from backend.clients.service import ClientDirectory
from backend.db.engine import make_engine
from backend.field_errors import FieldError
from backend.ledger import chart
from backend.ledger.reports import usage_by
from backend.ledger.service import Ledger, Usage
from backend.money import cost_of_tokens
from backend.runtime.bus import Event, EventBus, InvoiceEvent
from backend.runtime.clock import RealClock, to_us
from backend.runtime.supervisor import Supervisor
from backend.settings import BillingSettings

USD = 10**9
MODEL = "qwen2.5-0.5b-instruct"
PRICE_A = (150_000_000, 600_000_000)  # nano-USD per 1M prompt / completion tokens
PRICE_B = (175_000_000, 700_000_000)
NOV, DEC = Period(2026, 11), Period(2026, 12)
BILLING = BillingSettings(business_name="Tokenmill Test Ltd", business_address="1 Test Road\nTestville")


def utc(*args: int) -> int:
    return to_us(dt.datetime(*args, tzinfo=dt.UTC))


class ManualClock(RealClock):
    """Real timers; the time read is the one the test sets."""

    def __init__(self, us: int) -> None:
        super().__init__()
        self.us = us
        self.now_us = lambda: self.us  # type: ignore[method-assign]

    def at(self, *args: int) -> int:
        self.us = utc(*args)
        return self.us


@dataclass
class Book:
    """A ledger, its clients and the invoice service, on one database, at the time the test sets."""

    clock: ManualClock
    ledger: Ledger
    clients: ClientDirectory
    invoices: InvoiceService
    events: list[Event] = field(default_factory=list)

    async def spend(self, client_id: str, price: tuple[int, int], prompt: int, completion: int,
                    requests: int = 1) -> int:
        """A settled request (or `requests` of them as one event) at `price`: what it was charged."""
        charged = cost_of_tokens(prompt, price[0]) + cost_of_tokens(completion, price[1])
        hold, durable = self.ledger.reserve(chart.client_account(client_id), chart.REVENUE, charged + 1_000,
                                            code="usage")
        await durable
        now = self.clock.now_us()
        usage = Usage(self.ledger.mint_key("req"), client_id, MODEL, prompt, completion, price[0], price[1], now, now,
                      requests=requests)
        await self.ledger.settle(hold.key, charged=charged, usage=usage)
        return charged

    async def move(self, key: str, debit: str, credit: str, amount: int, code: str) -> None:
        await self.ledger.transfer(key, debit, credit, amount, code=code)

    async def pay(self, client_id: str, amount: int, key: str) -> None:
        await self.move(key, chart.PAYMENT_CLEARING, chart.client_account(client_id), amount, "stripe_payment")

    async def refund(self, client_id: str, amount: int, key: str) -> None:
        await self.move(key, chart.client_account(client_id), chart.PAYMENT_CLEARING, amount, "stripe_refund")

    def balance(self, client_id: str) -> int:
        """The ledger's own: prepaid less what is owed."""
        owed = self.ledger._accounts.get(chart.receivable_account(client_id))
        return self.ledger.account(chart.client_account(client_id)).balance - (owed.balance if owed else 0)


async def open_book(engine) -> Book:
    clock = ManualClock(utc(2026, 10, 1))
    ledger = Ledger(engine, expiry_interval_s=0, clock=clock)
    await ledger.start()
    bus = EventBus(clock)
    book = Book(clock, ledger, ClientDirectory(engine, ledger, clock, events=bus),
                InvoiceService(engine, BILLING, clock=clock, bus=bus, ledger=ledger))
    bus.attach("test", book.events.append)
    await book.invoices.start()
    return book


@pytest.fixture
async def book(engine):
    b = await open_book(engine)
    yield b
    await b.ledger.close()


async def seed_november(book: Book) -> dict[str, int]:
    """acme: a balance from October, usage at two prices, a payment, a grant, a refund, a hold still
    open and one voided at the month's end; dormant: a balance and nothing else; idle: nothing."""
    c, expected = book.clock, {}
    c.at(2026, 10, 1)
    for name in ("acme", "dormant", "idle"):
        await book.clients.create_client(name.title(), name)
    c.at(2026, 10, 20)
    await book.clients.grant_credit("acme", 5 * USD, idempotency_key="oct-acme")
    await book.clients.grant_credit("dormant", 1 * USD, idempotency_key="oct-dormant")
    c.at(2026, 11, 1)  # the first instant of the month is in it
    a1 = await book.spend("acme", PRICE_A, 1_000, 500)
    c.at(2026, 11, 3, 9)
    a2 = await book.spend("acme", PRICE_A, 3_000, 1_500)
    c.at(2026, 11, 4, 10)
    await book.pay("acme", 20 * USD, "stripe:pay_1:credit")
    c.at(2026, 11, 10)  # the price changed
    b1 = await book.spend("acme", PRICE_B, 2_000_000, 1_000_000, requests=3)
    c.at(2026, 11, 12)
    await book.clients.grant_credit("acme", 10 * USD, idempotency_key="nov-acme")
    c.at(2026, 11, 20)
    await book.refund("acme", 2 * USD, "stripe:ch_1:re_1")
    c.at(2026, 11, 30, 23, 59)
    _open, durable = book.ledger.reserve(chart.client_account("acme"), chart.REVENUE, 1 * USD, code="usage")
    await durable
    voided, durable = book.ledger.reserve(chart.client_account("acme"), chart.REVENUE, 1 * USD, code="usage")
    await durable
    await book.ledger.void(voided.key)
    expected.update(a=a1 + a2, b=b1)
    return expected


async def test_a_seeded_month_is_invoiced_with_the_ledgers_totals(book, engine):
    spent = await seed_november(book)
    book.clock.at(2026, 12, 2)
    result = await book.invoices.generate(NOV, "none")
    assert (result.failed, result.duplicates) == ([], [])
    assert [(i.head.number, i.head.client_id) for i in result.issued] == [
        ("TM-2026-000001", "acme"), ("TM-2026-000002", "dormant")]  # idle had nothing: no invoice
    acme = result.issued[0]
    h = acme.head
    lines = [(x.position, x.kind, x.model, x.price_prompt_per_mtok, x.requests, x.amount) for x in acme.lines]
    assert lines == [
        (1, "usage", MODEL, PRICE_A[0], 2, spent["a"]),
        (2, "usage", MODEL, PRICE_B[0], 3, spent["b"]),
        (3, "payment", None, None, None, 20 * USD),
        (4, "grant", None, None, None, 10 * USD),
        (5, "refund", None, None, None, 2 * USD),
    ]
    assert (acme.lines[0].prompt_tokens, acme.lines[0].completion_tokens) == (4_000, 2_000)
    assert acme.lines[2].occurred_us == utc(2026, 11, 4, 10) and acme.lines[2].description == "Card payment (Stripe)"
    assert (h.opening_balance, h.usage_total, h.payments_total, h.grants_total, h.refunds_total) == (
        5 * USD, spent["a"] + spent["b"], 20 * USD, 10 * USD, 2 * USD)
    # The ledger's own figures: the balance now (the open hold reserves, it does not post) and its usage report.
    assert h.closing_balance == book.balance("acme") == 5 * USD + 20 * USD + 10 * USD - h.usage_total - 2 * USD
    (row,) = [r for r in await usage_by(engine, "client", NOV.start_us, NOV.end_us) if r.group == "acme"]
    assert row.charged == h.usage_total and row.requests == 5
    assert (h.period, h.period_start_us, h.period_end_us, h.issued_us) == ("2026-11", NOV.start_us, NOV.end_us,
                                                                          utc(2026, 12, 2))
    assert (h.client_name, h.business_name, h.business_address) == ("Acme", BILLING.business_name,
                                                                     BILLING.business_address)
    dormant = result.issued[1]
    assert (dormant.head.opening_balance, dormant.head.closing_balance, dormant.lines) == (USD, USD, [])
    # Stored as issued, read back the same.
    again = await book.invoices.invoice("TM-2026-000001")
    assert again is not None and again.head.closing_balance == h.closing_balance
    assert [(x.kind, x.amount) for x in again.lines] == [(x.kind, x.amount) for x in acme.lines]
    assert await book.invoices.invoice("TM-2026-000001", client_id="dormant") is None  # not dormant's
    issued = [e for e in book.events if e.kind == "invoice.issued"]
    assert [e.subject for e in issued] == ["acme", "dormant"] and all(isinstance(e, InvoiceEvent) for e in issued)
    assert "TM-2026-000001 to Acme for November 2026" in issued[0].message
    assert [e.message for e in book.events if e.kind == "invoice.run"] == [
        "November 2026: issued 2, already issued 0, failed 0"]


async def count(engine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar()


async def counter(engine) -> int:
    async with engine.connect() as conn:
        return await store.last_number(conn)


async def test_numbers_are_gapless_across_clients_runs_and_years(book, engine):
    await seed_november(book)
    book.clock.at(2026, 12, 1)  # the first instant of December is December's
    await book.clients.grant_credit("idle", 3 * USD, idempotency_key="dec-idle")
    await book.spend("acme", PRICE_B, 1_000, 1_000)
    book.clock.at(2026, 12, 2)
    nov = await book.invoices.generate(NOV)
    assert [i.head.seq for i in nov.issued] == [1, 2]
    assert [x.requests for x in nov.issued[0].lines if x.kind == "usage"] == [2, 3]
    again = await book.invoices.generate(NOV)  # a second run finds them and uses no number
    assert again.issued == [] and [(d.client_id, d.number) for d in again.duplicates] == [
        ("acme", "TM-2026-000001"), ("dormant", "TM-2026-000002")]
    book.clock.at(2027, 1, 2)
    dec = await book.invoices.generate(DEC)
    assert [(i.head.number, i.head.client_id) for i in dec.issued] == [
        ("TM-2027-000003", "acme"), ("TM-2027-000004", "dormant"), ("TM-2027-000005", "idle")]  # the year of issue
    acme_nov, acme_dec = nov.issued[0].head, dec.issued[0].head
    assert acme_dec.opening_balance == acme_nov.closing_balance  # one month closes where the next opens
    assert [x.kind for x in dec.issued[0].lines] == ["usage"]
    assert await counter(engine) == 5 and await count(engine, Invoice.__table__) == 5
    async with engine.connect() as conn:
        seqs = (await conn.execute(select(Invoice.__table__.c.seq).order_by(Invoice.__table__.c.seq))).scalars().all()
    assert seqs == [1, 2, 3, 4, 5]
    listed = await book.invoices.invoices(period=DEC)
    assert [i.number for i in listed] == ["TM-2027-000005", "TM-2027-000004", "TM-2027-000003"]


async def test_a_client_whose_month_does_not_add_up_gets_no_invoice_and_uses_no_number(book, engine):
    await seed_november(book)
    book.clock.at(2026, 11, 15)
    await book.move("odd-1", chart.PROMOTIONS, chart.client_account("dormant"), USD, "mystery_bonus")
    book.clock.at(2026, 12, 2)
    result = await book.invoices.generate(NOV)
    assert [i.head.number for i in result.issued] == ["TM-2026-000001"]
    assert [(f.client_id, "'mystery_bonus' is not one an invoice knows" in f.reason) for f in result.failed] == [
        ("dormant", True)]
    assert [e.level for e in book.events if e.kind == "invoice.failed"] == ["error"]
    assert await counter(engine) == 1


async def test_a_failed_insert_rolls_its_number_back(book, engine):
    await seed_november(book)
    book.clock.at(2026, 12, 2)
    preview = await book.invoices.generate(NOV, "all")
    head, lines = preview.issued[0].head, preview.issued[0].lines
    bad = [*lines, InvoiceLine(invoice_id=0, position=99, kind="bogus", description="x", amount=1)]
    with pytest.raises(DBAPIError):  # the line's CHECK fails after the counter was taken
        await store.issue(engine, head, bad, "TM")
    assert await counter(engine) == 0 and await count(engine, Invoice.__table__) == 0
    result = await book.invoices.generate(NOV)
    assert [i.head.number for i in result.issued] == ["TM-2026-000001", "TM-2026-000002"]


async def test_the_database_refuses_to_change_an_issued_invoice(book, engine):
    await seed_november(book)
    book.clock.at(2026, 12, 2)
    (acme, _dormant) = (await book.invoices.generate(NOV)).issued
    for sql in ("UPDATE invoice SET closing_balance = 0", "DELETE FROM invoice",
                "UPDATE invoice_line SET amount = 0", "DELETE FROM invoice_line"):
        with pytest.raises(DBAPIError, match="immutable"):
            async with engine.begin() as conn:
                await conn.execute(text(sql))
    stored = await book.invoices.invoice(acme.head.number)
    assert stored.head.closing_balance == acme.head.closing_balance
    assert [x.amount for x in stored.lines] == [x.amount for x in acme.lines]


async def test_the_database_refuses_a_line_added_to_an_issued_invoice(book, engine):
    """UPDATE and DELETE are refused (above); an INSERT of a new line into an invoice already issued
    is refused too (its line_count, set at issue, is full), at a new position or a free one."""
    await seed_november(book)
    book.clock.at(2026, 12, 2)
    (acme, dormant) = (await book.invoices.generate(NOV)).issued
    for invoice_id, position in ((acme.head.id, 99), (acme.head.id, 0), (dormant.head.id, 1)):
        with pytest.raises(DBAPIError, match="immutable"):
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO invoice_line (invoice_id, position, kind, description, amount) "
                    "VALUES (:id, :position, 'usage', 'added after issue', 1000000000)"),
                    {"id": invoice_id, "position": position})
    stored = await book.invoices.invoice(acme.head.number)
    assert [(x.position, x.amount) for x in stored.lines] == [(x.position, x.amount) for x in acme.lines]
    assert (await book.invoices.invoice(dormant.head.number)).lines == []
    assert (stored.head.line_count, dormant.head.line_count) == (len(acme.lines), 0) == (5, 0)


async def test_dry_runs_write_nothing(book, engine):
    await seed_november(book)
    book.clock.at(2026, 12, 2)
    events = len(book.events)
    preview = await book.invoices.generate(NOV, "all")
    assert not preview.written and [(i.head.number, i.head.client_id) for i in preview.issued] == [
        ("TM-2026-000001", "acme"), ("TM-2026-000002", "dormant")]  # as they would be issued now
    assert preview.issued[0].head.usage_total > 0 and len(preview.issued[0].lines) == 5
    checked = await book.invoices.generate(NOV, "validate")
    assert [(p.client_id, p.client_name) for p in checked.pending] == [("acme", "Acme"), ("dormant", "Dormant")]
    assert checked.issued == [] and checked.duplicates == []
    assert (await count(engine, Invoice.__table__), await count(engine, InvoiceLine.__table__),
            await counter(engine), len(book.events)) == (0, 0, 0, events)
    issued = await book.invoices.generate(NOV, "none")
    assert [i.head.number for i in issued.issued] == [i.head.number for i in preview.issued]
    checked = await book.invoices.generate(NOV, "validate")
    assert checked.pending == [] and [d.number for d in checked.duplicates] == ["TM-2026-000001", "TM-2026-000002"]
    with pytest.raises(FieldError) as exc:
        await book.invoices.generate(NOV, "maybe")
    assert exc.value.field == "dry_run"


async def test_a_month_not_over_is_refused(book):
    book.clock.at(2026, 11, 30, 23, 59)
    with pytest.raises(FieldError, match="November 2026 is not over yet") as exc:
        await book.invoices.generate(NOV, "all")
    assert exc.value.field == "date"


async def test_two_generations_at_once_issue_each_invoice_once(book, db_url):
    """Two backends on one database (two engines, two services) generate the same month at once."""
    await seed_november(book)
    for name in ("c1", "c2", "c3", "c4"):
        book.clock.at(2026, 10, 2)
        await book.clients.create_client(name, name)
        book.clock.at(2026, 11, 5)
        await book.clients.grant_credit(name, USD, idempotency_key=f"g-{name}")
    book.clock.at(2026, 12, 2)
    other_engine = make_engine(db_url)
    other = InvoiceService(other_engine, BILLING, clock=book.clock)
    try:
        a, b = await asyncio.gather(book.invoices.generate(NOV), other.generate(NOV))
    finally:
        await other_engine.dispose()
    numbers = sorted(i.head.number for i in a.issued + b.issued)
    assert numbers == [f"TM-2026-{n:06d}" for n in range(1, 7)]
    assert sorted(d.client_id for d in a.duplicates + b.duplicates) == sorted(
        i.head.client_id for i in a.issued + b.issued)  # what one issued, the other found issued
    assert a.failed == b.failed == []
    assert await counter(book.invoices.engine) == 6


async def run_schedule(book: Book, engine, at_us: int) -> Supervisor:
    """A start of the backend at `at_us`: the supervisor with the invoice schedule, until its
    catch-up (if any) is done."""
    book.clock.us = at_us
    sup = Supervisor(book.clock, None, engine)
    book.invoices.schedule(sup)
    sup.start()
    for _ in range(500):  # the schedule reads its last run, maybe runs, then sleeps until the next 2nd
        info = sup.info(SCHEDULE)
        if info.next_run_us is not None and info.next_run_us > at_us:
            break
        await asyncio.sleep(0.02)
    await sup.stop()
    return sup


async def test_the_schedule_invoices_the_previous_month_and_catches_up_missed_2nds(book, engine):
    await seed_november(book)
    await run_schedule(book, engine, utc(2026, 11, 20))  # first start ever: nothing in the past is run
    assert await count(engine, Invoice.__table__) == 0
    # Down over the 2nd of December; started again on the 5th: November is invoiced then.
    sup = await run_schedule(book, engine, utc(2026, 12, 5, 12))
    assert sup.info(SCHEDULE).runs == 1
    assert [(i.number, i.period, i.issued_us) for i in reversed(await book.invoices.invoices())] == [
        ("TM-2026-000001", "2026-11", utc(2026, 12, 5, 12)), ("TM-2026-000002", "2026-11", utc(2026, 12, 5, 12))]
    # December and January have activity; the backend is down from Dec 10 over two 2nds (Jan, Feb).
    book.clock.at(2026, 12, 15)
    await book.clients.grant_credit("idle", 2 * USD, idempotency_key="dec-idle")
    book.clock.at(2027, 1, 15)
    await book.spend("idle", PRICE_A, 1_000_000, 0)
    sup = await run_schedule(book, engine, utc(2027, 2, 10))
    assert sup.info(SCHEDULE).runs == 1  # the supervisor runs the latest missed 2nd once; it bills both months
    listed = [(i.number, i.period, i.client_id) for i in reversed(await book.invoices.invoices())]
    assert listed[2:] == [
        ("TM-2027-000003", "2026-12", "acme"), ("TM-2027-000004", "2026-12", "dormant"),
        ("TM-2027-000005", "2026-12", "idle"), ("TM-2027-000006", "2027-01", "acme"),
        ("TM-2027-000007", "2027-01", "dormant"), ("TM-2027-000008", "2027-01", "idle")]
    # The same instant again (a restart the same day): nothing more.
    await run_schedule(book, engine, utc(2027, 2, 11))
    assert await count(engine, Invoice.__table__) == 8
    assert await count(engine, InvoiceCounter.__table__) == 1


async def test_a_catch_up_before_any_invoice_was_issued_bills_every_missed_month(book, engine):
    """A young deployment: November has activity, nothing was ever invoiced, and the backend is down
    over both December 2nd and January 2nd. The supervisor runs the latest missed 2nd (January's)
    once; the months come from the schedule's own record of its last run, not from the invoices, so
    November is invoiced too."""
    await seed_november(book)
    await run_schedule(book, engine, utc(2026, 11, 20))  # first start ever: the schedule counts from here
    sup = await run_schedule(book, engine, utc(2027, 1, 10))  # down from Nov 20 over Dec 2nd and Jan 2nd
    assert sup.info(SCHEDULE).runs == 1
    periods = sorted({i.period for i in await book.invoices.invoices()})
    assert periods == ["2026-11", "2026-12"]


async def test_a_catch_up_stopped_half_way_finishes_that_month_on_restart(book, engine):
    """Down over two 2nds; the catch-up run (December, then January) is stopped half way through
    December (a crash or a shutdown), so the schedule did not record it. On restart the same
    instant is run again: the clients December's run had not reached yet still get their December
    invoice, and those it had reached are not invoiced twice."""
    await seed_november(book)
    await run_schedule(book, engine, utc(2026, 11, 20))  # first start
    await run_schedule(book, engine, utc(2026, 12, 2))  # the schedule invoices November
    assert {i.period for i in await book.invoices.invoices()} == {"2026-11"}
    # Down from Dec 2 to Feb 10; the catch-up reached acme's December invoice only, then stopped.
    book.clock.at(2027, 2, 10)
    preview = await book.invoices.generate(DEC, "all")
    acme = next(i for i in preview.issued if i.head.client_id == "acme")
    acme_dec = await store.issue(book.invoices.engine, acme.head, acme.lines, "TM")
    # Restart: the supervisor runs the latest missed instant, February 2nd, again.
    sup = await run_schedule(book, engine, utc(2027, 2, 10))
    assert sup.info(SCHEDULE).runs == 1
    dec = {i.client_id: i.number for i in await book.invoices.invoices(period=DEC)}
    assert dec.keys() == {"acme", "dormant"} and dec["acme"] == acme_dec.head.number
    assert {i.client_id for i in await book.invoices.invoices(period=Period(2027, 1))} == {"acme", "dormant"}


async def test_a_scheduled_run_tries_again_an_invoice_that_failed_for_a_passing_reason(book, engine, monkeypatch):
    """The database is locked while dormant's November invoice is issued: the run invoices the
    others, then fails, so the supervisor does not record the instant and runs it again after its
    backoff; dormant is invoiced then, acme is not invoiced twice."""
    await seed_november(book)
    await run_schedule(book, engine, utc(2026, 11, 20))  # first start
    issue, calls = store.issue, []

    async def locked_once(engine_, head, lines, prefix):
        calls.append(head.client_id)
        if calls.count("dormant") == 1 and head.client_id == "dormant":
            raise OperationalError("INSERT INTO invoice", {}, Exception("database is locked"))
        return await issue(engine_, head, lines, prefix)

    monkeypatch.setattr(store, "issue", locked_once)
    book.clock.at(2026, 12, 5)  # started after the 2nd: the supervisor runs December 2nd's instant
    sup = Supervisor(book.clock, None, engine, backoff_base_s=0.01)
    book.invoices.schedule(sup)
    sup.start()
    try:
        for _ in range(500):
            if sup.info(SCHEDULE).runs:
                break
            await asyncio.sleep(0.02)
    finally:
        await sup.stop()
    info = sup.info(SCHEDULE)
    assert (info.runs, info.restarts) == (1, 1)
    assert info.last_error.startswith(RunIncomplete.__name__) and "2026-11: dormant" in info.last_error
    assert sorted(i.client_id for i in await book.invoices.invoices(period=NOV)) == ["acme", "dormant"]
    assert calls == ["acme", "dormant", "dormant"]  # acme was found issued, not issued again


async def test_a_refund_beyond_the_balance_is_owed_and_the_balance_goes_negative(book):
    """As the Stripe side posts it (backend/billing/credit_moves.py): the refund takes the available
    credit, the rest is recorded as owed (receivable); a later payment first settles what is owed."""
    book.clock.at(2026, 10, 1)
    await book.clients.create_client("Acme", "acme")
    await book.ledger.open_account(chart.receivable_account("acme"), chart.Kind.RECEIVABLE, owner="acme")
    book.clock.at(2026, 11, 2)
    await book.pay("acme", 10 * USD, "stripe:pay_1:credit")
    spent = await book.spend("acme", PRICE_A, 10_000_000, 0)  # $1.50
    book.clock.at(2026, 11, 9)
    await book.refund("acme", 10 * USD - spent, "stripe:ch_1:re_1")  # all the credit left
    await book.move("stripe:ch_1:re_1:receivable", chart.receivable_account("acme"), chart.PAYMENT_CLEARING, spent,
                    "receivable")
    book.clock.at(2026, 12, 2)
    (nov,) = (await book.invoices.generate(NOV)).issued
    assert [(x.kind, x.amount) for x in nov.lines] == [("usage", spent), ("payment", 10 * USD),
                                                      ("refund", 10 * USD - spent), ("adjustment", spent)]
    assert nov.lines[-1].description == "Refund or dispute beyond the balance (owed)"
    assert nov.head.closing_balance == -spent == book.balance("acme")  # owed
    assert nov.head.refunds_total == 10 * USD - spent
    book.clock.at(2026, 12, 5)
    await book.pay("acme", 20 * USD, "stripe:pay_2:credit")
    await book.move("stripe:pay_2:receivable_settled", chart.client_account("acme"),
                    chart.receivable_account("acme"), spent, "receivable_settled")
    book.clock.at(2027, 1, 2)
    (dec,) = (await book.invoices.generate(DEC)).issued
    assert [(x.kind, x.amount) for x in dec.lines] == [("payment", 20 * USD)]  # settling moves nothing
    assert (dec.head.opening_balance, dec.head.closing_balance) == (-spent, 20 * USD - spent)
    assert dec.head.closing_balance == book.balance("acme")
    assert book.ledger.account(chart.client_account("acme")).balance == 20 * USD - spent


async def test_the_csv_ends_with_a_note_stating_its_rounding(book):
    """The CSV shows every amount rounded to the cent (amount_usd / effect_usd) beside the exact one;
    the rounded lines need not add up to the rounded closing balance, so its last row (kind "note")
    says that it rounds, as the PDF and the JSON do."""
    book.clock.at(2026, 10, 1)
    await book.clients.create_client("Acme", "acme")
    book.clock.at(2026, 11, 2)
    await book.clients.grant_credit("acme", USD, idempotency_key="g")
    # Three lines of $0.004 each (three prices): each shows $0.00, together they are $0.012.
    for i, p in enumerate((4_000_000_000, 2_000_000_000, 1_000_000_000)):
        book.clock.at(2026, 11, 3 + i)
        await book.spend("acme", (p, 0), 1_000_000 * 4_000_000 // p, 0)
    book.clock.at(2026, 12, 2)
    (inv,) = (await book.invoices.generate(NOV)).issued
    assert [x.amount for x in inv.lines if x.kind == "usage"] == [4_000_000] * 3
    rows = list(csv.DictReader(io.StringIO(render_csv(inv).decode())))
    opening, *lines, closing, note = rows
    assert (opening["kind"], closing["kind"], note["kind"]) == ("opening_balance", "closing_balance", "note")
    shown = Decimal(opening["amount_usd"]) + sum(Decimal(r["effect_usd"]) for r in lines)
    assert (shown, Decimal(closing["amount_usd"])) == (Decimal("1.00"), Decimal("0.99"))  # a cent apart
    assert (note["invoice_number"], note["description"]) == (inv.head.number, ROUNDING_NOTE)
    assert opening["amount_nano"] and not any(v for k, v in note.items() if k not in (
        "invoice_number", "period", "kind", "description"))
