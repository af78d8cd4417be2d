"""Billing: money in. The top lines sum up today (UTC): Stripe payments in, refunds and disputes
taken back, auto-recharges asked, paid and failed; and the invoices issued this month. Below, one
row per client with its credit and its auto-recharge settings (N/A: it never set any), then
today's payments, refunds and failed recharges with Stripe's words, then this month's invoices.
`/` narrows all three tables; Enter on a client (or on one of its payments) shows its payments,
any day; Esc goes back. Everything is GET /admin/billing; nothing here changes anything."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table as RichTable
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.billing_admin import BillingOut, ClientBillingOut, PaymentRowOut, RefundRowOut
from console.figures import NA
from console.money import usd
from console.views.base import Row, TableView, fill_table, matches
from console.widgets.billing_summary import BillingSummary, month_name
from console.widgets.table import Table, plain

KINDS = {"checkout": "top-up", "recharge": "recharge"}


def _time(us: int, date: bool = False) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M" if date else "%H:%M")


def _money(nano: int | None) -> str:
    return NA if nano is None else usd(nano)


def recharge_state(c: ClientBillingOut) -> str:
    if c.recharge_enabled is None:
        return NA
    return "on" if c.recharge_enabled else "off"


NOTE_CHARS = 24  # a reason is cut in the table; the drill-down (Enter) says it whole


def client_note(c: ClientBillingOut, width: int | None = None) -> str:
    if c.recharge_disabled_reason:
        why = c.recharge_disabled_reason
        return why if width is None or len(why) <= width else why[: width - 1] + "…"
    if c.recharge_in_flight:
        return f"charging ({c.recharge_in_flight})"
    return ""


def client_cells(c: ClientBillingOut) -> tuple:
    cap = NA if c.recharge_enabled is None else "none" if c.recharge_monthly_cap_nano is None else \
        usd(c.recharge_monthly_cap_nano)
    return (c.name, usd(c.balance_nano), usd(c.available_nano), usd(c.owed_nano), recharge_state(c),
            _money(c.recharge_threshold_nano), _money(c.recharge_amount_nano), cap,
            NA if c.recharge_failures is None else str(c.recharge_failures), "yes" if c.has_card else "no",
            client_note(c, NOTE_CHARS))


def payment_cells(p: PaymentRowOut) -> tuple:
    return (_time(p.created_us), p.client_name, KINDS.get(p.kind, p.kind), p.status, usd(p.amount_nano),
            p.failure or (f"refunded {usd(p.refunded_nano)}" if p.refunded_nano else ""))


def refund_cells(r: RefundRowOut) -> tuple:
    owed = f"owes {usd(r.owed_nano)}: credit did not cover it" if r.owed_nano else ""
    return (_time(r.at_us), r.client_name, r.kind, "taken back", usd(r.from_credit_nano + r.owed_nano),
            owed or (f"of {r.payment_id}" if r.payment_id else ""))


def activity_rows(b: BillingOut) -> list[tuple[int, str, Row]]:
    """(time, client id, row): today's payments and refunds, newest first."""
    rows = [(p.created_us, p.client_id, (f"pay:{p.id}", payment_cells(p))) for p in b.payment_rows]
    rows += [(r.at_us, r.client_id, (f"back:{r.key}", refund_cells(r))) for r in b.refund_rows]
    rows.sort(key=lambda r: (-r[0], r[2][0]))
    return rows


def payments_table(payments: list[PaymentRowOut]) -> RichTable:
    t = RichTable(box=None, padding=(0, 2), header_style="bold")
    for col in ("time (UTC)", "kind", "status", "amount", "credited", "refunded", "disputed", "Stripe says"):
        t.add_column(col, justify="right" if col in ("amount", "credited", "refunded", "disputed") else "left")
    for p in payments:
        t.add_row(_time(p.created_us, date=True), KINDS.get(p.kind, p.kind), p.status, usd(p.amount_nano),
                  usd(p.credited_nano), usd(p.refunded_nano), usd(p.disputed_nano), plain(p.failure))
    if not payments:
        t.add_row("-", "no payment through Stripe yet", "", "", "", "", "", "")
    return t


def client_heading(c: ClientBillingOut) -> str:
    card = "card saved" if c.has_card else "no card saved"
    lines = [f"{c.name} ({c.client_id})  balance {usd(c.balance_nano)}  available {usd(c.available_nano)}  "
             f"owes {usd(c.owed_nano)}  {card}  (Esc: back)"]
    if c.recharge_enabled is None:
        lines.append(f"auto-recharge: {NA} (never set)")
    else:
        cap = "no monthly cap" if c.recharge_monthly_cap_nano is None else \
            f"at most {usd(c.recharge_monthly_cap_nano)} a month"
        lines.append(f"auto-recharge {'on' if c.recharge_enabled else 'off'}: below "
                     f"{_money(c.recharge_threshold_nano)} add {_money(c.recharge_amount_nano)}, {cap}; "
                     f"{c.recharge_failures} failed in a row" + (f"; {client_note(c)}" if client_note(c) else ""))
    return "\n".join(lines)


class BillingView(TableView):
    view_name = "billing"
    columns = ("client", "balance", "available", "owed", "auto", "below", "adds", "cap/month", "fails", "card", "note")
    fixed_columns = 1  # the client's name stays while the money scrolls sideways
    DEFAULT_CSS = """
    BillingView #table { height: auto; max-height: 45%; }
    BillingView #activity { height: 1fr; min-height: 4; }
    BillingView #invoices { height: auto; max-height: 30%; }
    BillingView .section { height: 1; padding: 0 1; background: $panel; }
    BillingView.drilled #activity, BillingView.drilled #invoices, BillingView.drilled .section { display: none; }
    BillingView #detail { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.billing: BillingOut | None = None
        self.clients: dict[str, ClientBillingOut] = {}
        self.activity: list[Row] = []
        self.activity_client: dict[str, str] = {}  # activity row key -> its client
        self.invoices: list[Row] = []

    def compose(self) -> ComposeResult:
        yield BillingSummary(id="summary")
        yield Static("clients: credit and auto-recharge (Enter: payments)", id="clients-title",
                     classes="section", markup=False)
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="detail-title", markup=False)
            yield Static("", id="detail-payments")
        yield Static("today: payments, refunds, failed recharges", id="activity-title", classes="section",
                     markup=False)
        activity = Table(id="activity", cursor_type="row", zebra_stripes=True)
        activity.add_columns("UTC", "client", "what", "status", "amount", "note (Stripe's words)")
        yield activity
        yield Static("invoices issued this month", id="invoices-title", classes="section", markup=False)
        invoices = Table(id="invoices", cursor_type="row", zebra_stripes=True)
        invoices.add_columns("invoice", "client", "month", "billed", "closing balance")
        yield invoices

    # ------------------------------------------------------------------ data
    def _show(self, b: BillingOut) -> None:
        self.billing = b
        self.query_one(BillingSummary).show(b)
        self.clients = {c.client_id: c for c in b.clients}
        rows = activity_rows(b)
        self.activity = [r for _, _, r in rows]
        self.activity_client = {r[0]: client for _, client, r in rows}
        self.invoices = [(i.number, (i.number, i.client_name, i.period, usd(i.usage_nano),
                                     usd(i.closing_balance_nano))) for i in b.invoices]
        self.query_one("#invoices-title", Static).update(f"invoices issued in {month_name(b.month)}")

    async def refresh_table(self) -> None:
        self._show(await self.tm.api.billing())
        self.set_rows([(c.client_id, client_cells(c)) for c in self.billing.clients])

    async def refresh_detail(self, key: str) -> None:
        self._show(await self.tm.api.billing())
        client = self.clients.get(key)
        if client is None:
            self.query_one("#detail-title", Static).update(f"{key}: no such client any more (Esc: back)")
            self.query_one("#detail-payments", Static).update("")
            return
        payments = await self.tm.api.client_payments(key)
        self.query_one("#detail-title", Static).update(client_heading(client))
        self.query_one("#detail-payments", Static).update(payments_table(payments))

    def _render_rows(self) -> None:
        super()._render_rows()  # the clients
        fill_table(self.query_one("#activity", Table), [r for r in self.activity if matches(r, self.filter)])
        fill_table(self.query_one("#invoices", Table), [r for r in self.invoices if matches(r, self.filter)])

    # ------------------------------------------------------------------ drill down
    @on(DataTable.RowSelected, "#table")
    def _drill_client(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.clients:
            self.drill(event.row_key.value)

    @on(DataTable.RowSelected, "#activity")
    def _drill_activity(self, event: DataTable.RowSelected) -> None:
        client = self.activity_client.get(event.row_key.value or "")
        if client in self.clients:
            self.drill(client)
