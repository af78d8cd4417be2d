"""The operator's billing figures (GET /admin/billing, the console's Billing view), read straight
from the billing tables and the ledger: today's Stripe payments and the refunds and disputes that
took money back, today's auto-recharges and their failures with Stripe's words, the invoices issued
this month, and each client's recharge settings beside its balance.

Sums are the ledger's where the ledger holds the money (payments credited, refunds and disputes
taken back: by transfer code, see backend/billing/credit_moves.py); the rows are the tables'."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.invoice_tables import Invoice
from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from backend.ledger.errors import UnknownAccount
from backend.ledger.service import Ledger
from backend.ledger.tables import LedgerTransfer
from backend.runtime.clock import from_us, to_us
from backend.wire.billing_admin import (
    BillingOut,
    ClientBillingOut,
    CountSum,
    InvoiceRowOut,
    PaymentRowOut,
    RechargesOut,
    RefundRowOut,
)

DAY_US = 86_400_000_000
MAX_ROWS = 500  # rows of a day shown at most (newest first); the sums count them all
PAYMENT_CODE = "stripe_payment"  # payment clearing -> client prepaid
REVERSAL_CODES = {"stripe_refund": "refund", "stripe_dispute": "dispute"}  # client prepaid -> payment clearing
OWED_CODE = "receivable"  # the client's receivable -> payment clearing: what its credit could not cover
OWED_SUFFIX = ":receivable"
FAILED = ("failed", "requires_action")


def month_bounds(now_us: int) -> tuple[int, int, str]:
    """[start, end) of the UTC month of `now_us`, and its name ("2026-11")."""
    now = from_us(now_us)
    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=dt.UTC)
    return to_us(start), to_us(end), f"{now.year:04d}-{now.month:02d}"


def _client_of(account_code: str) -> str:
    """The client an account belongs to: `client:{id}` or `client:{id}:receivable`."""
    return account_code.removeprefix("client:").removesuffix(OWED_SUFFIX)


def _reversal_kind(base_key: str) -> str:
    """Refund or dispute, for a reversal the client's credit could not cover at all (only its owed
    part is in the ledger): from the Stripe id that ends its key (re_... refunds, dp_/du_ disputes)."""
    last = base_key.rsplit(":", 1)[-1]
    return "dispute" if last.startswith(("dp_", "du_")) else "refund"


class BillingReport:
    def __init__(self, engine: AsyncEngine, ledger: Ledger) -> None:
        self.engine, self.ledger = engine, ledger

    async def out(self, now_us: int, clients: Iterable[tuple[str, str]]) -> BillingOut:
        """`clients`: (id, name) of every client."""
        names = dict(clients)
        day = now_us - now_us % DAY_US
        month_start, month_end, month = month_bounds(now_us)
        p, cb, inv = Payment.__table__, ClientBilling.__table__, Invoice.__table__
        async with self.engine.connect() as conn:
            payments = (await conn.execute(
                select(p).where(or_(p.c.created_us >= day, p.c.updated_us >= day))
                .order_by(p.c.created_us.desc(), p.c.id).limit(MAX_ROWS))).mappings().all()
            recharges = (await conn.execute(
                select(p.c.status, p.c.amount).where(p.c.created_us >= day, p.c.kind == "recharge"))).all()
            settings = {r["client_id"]: r for r in (await conn.execute(select(cb))).mappings()}
            invoices = (await conn.execute(
                select(inv).where(inv.c.issued_us >= month_start, inv.c.issued_us < month_end)
                .order_by(inv.c.seq))).mappings().all()
            paid, reversals = await self._ledger_moves(conn, day)

        rows = [self._payment(r, names) for r in payments]
        failed = [r for r in rows if r.kind == "recharge" and r.status in FAILED and r.created_us >= day]
        ok = [a for s, a in recharges if s == "succeeded"]
        bad = [a for s, a in recharges if s in FAILED]
        recharge = RechargesOut(
            attempts=len(recharges), succeeded=CountSum(len(ok), sum(ok)), failed=CountSum(len(bad), sum(bad)),
            in_flight=sum(1 for r in settings.values() if r["recharge_in_flight"]), failures=failed)
        refunds = [self._refund(key, moves, names) for key, moves in reversals.items()]
        refunds.sort(key=lambda r: (-r.at_us, r.key))
        invoice_rows = [InvoiceRowOut(
            number=r["number"], client_id=r["client_id"], client_name=r["client_name"], period=r["period"],
            issued_us=r["issued_us"], usage_nano=r["usage_total"], payments_nano=r["payments_total"],
            grants_nano=r["grants_total"], refunds_nano=r["refunds_total"],
            opening_balance_nano=r["opening_balance"], closing_balance_nano=r["closing_balance"]) for r in invoices]
        client_rows = [self._client(cid, name, settings.get(cid))
                       for cid, name in sorted(names.items(), key=lambda c: (c[1].lower(), c[0]))]
        return BillingOut(
            now_us=now_us, day_start_us=day, month=month, payments=CountSum(len(paid), sum(paid)),
            payment_rows=rows,
            refunds=CountSum(len(refunds), sum(r.from_credit_nano + r.owed_nano for r in refunds)),
            refund_rows=refunds[:MAX_ROWS], recharges=recharge, invoices=invoice_rows,
            invoices_total_nano=sum(r.usage_nano for r in invoice_rows), clients=client_rows)

    async def client_payments(self, client_id: str, name: str, limit: int = MAX_ROWS) -> list[PaymentRowOut]:
        """A client's payments, newest first (the console's drill-down)."""
        p = Payment.__table__
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(p).where(p.c.client_id == client_id)
                                       .order_by(p.c.created_us.desc(), p.c.id).limit(limit))).mappings().all()
        return [self._payment(r, {client_id: name}) for r in rows]

    async def _ledger_moves(self, conn, since_us: int) -> tuple[list[int], dict[str, list]]:
        """Stripe payments credited since `since_us` (amounts), and the refunds and disputes taken back
        since then, grouped by the move's key (its part from credit and its part owed). Read by the
        payment clearing account (indexed): payments debit it, reversals credit it."""
        try:
            clearing = self.ledger.account(chart.PAYMENT_CLEARING).id
        except UnknownAccount:
            return [], {}
        codes = {a.id: a.code for a in self.ledger.accounts()}
        t = LedgerTransfer.__table__
        paid = [a for (a,) in (await conn.execute(
            select(t.c.amount).where(t.c.debit_account_id == clearing, t.c.code == PAYMENT_CODE,
                                     t.c.created_us >= since_us))).all()]
        moves: dict[str, list] = {}
        q = select(t.c.key, t.c.code, t.c.amount, t.c.ref, t.c.debit_account_id, t.c.created_us).where(
            t.c.credit_account_id == clearing, t.c.code.in_([*REVERSAL_CODES, OWED_CODE]),
            t.c.created_us >= since_us)
        for key, code, amount, ref, debit, at in (await conn.execute(q)).all():
            base = key.removesuffix(OWED_SUFFIX) if code == OWED_CODE else key
            moves.setdefault(base, []).append((code, amount, ref, codes.get(debit, ""), at))
        return paid, moves

    @staticmethod
    def _refund(key: str, moves: list, names: dict[str, str]) -> RefundRowOut:
        taken = sum(a for code, a, *_ in moves if code != OWED_CODE)
        owed = sum(a for code, a, *_ in moves if code == OWED_CODE)
        kinds = [REVERSAL_CODES[code] for code, *_ in moves if code in REVERSAL_CODES]
        client = _client_of(moves[0][3])
        return RefundRowOut(key=key, client_id=client, client_name=names.get(client, client),
                            kind=kinds[0] if kinds else _reversal_kind(key), payment_id=moves[0][2],
                            from_credit_nano=taken, owed_nano=owed, at_us=max(m[4] for m in moves))

    @staticmethod
    def _payment(r, names: dict[str, str]) -> PaymentRowOut:
        return PaymentRowOut(
            id=r["id"], client_id=r["client_id"], client_name=names.get(r["client_id"], r["client_id"]),
            kind=r["kind"], status=r["status"], amount_nano=r["amount"], credited_nano=r["credited"],
            refunded_nano=r["refunded"], disputed_nano=r["disputed"], failure=r["failure"],
            created_us=r["created_us"], updated_us=r["updated_us"])

    def _client(self, client_id: str, name: str, s) -> ClientBillingOut:
        try:
            acc = self.ledger.account(chart.client_account(client_id))
            balance, available = acc.balance, acc.available
        except UnknownAccount:
            balance = available = 0
        try:
            owed = self.ledger.account(chart.receivable_account(client_id)).balance
        except UnknownAccount:
            owed = 0
        if s is None:
            return ClientBillingOut(client_id, name, balance, available, owed, False, None, None, None, None, None,
                                    None, "")
        return ClientBillingOut(
            client_id, name, balance, available, owed, bool(s["payment_method_id"]), bool(s["recharge_enabled"]),
            s["recharge_threshold"], s["recharge_amount"], s["recharge_monthly_cap"], s["recharge_failures"],
            s["recharge_in_flight"], s["recharge_disabled_reason"])
