"""Shapes of the admin API's billing figures (GET /admin/billing) and the ledger's profit per
model and day (GET /admin/profit). Money is integer nano-USD in `*_nano` fields; a field that is
not known is null (the console shows N/A), never a made-up zero."""

from __future__ import annotations

import msgspec


class CountSum(msgspec.Struct):
    count: int
    sum_nano: int


class PaymentRowOut(msgspec.Struct):
    """A payment taken, or asked for, through Stripe (the `payment` table)."""

    id: str
    client_id: str
    client_name: str
    kind: str  # checkout | recharge
    status: str  # open | succeeded | failed | requires_action | canceled
    amount_nano: int  # asked for
    credited_nano: int  # reached the client's balance
    refunded_nano: int
    disputed_nano: int
    failure: str  # Stripe's words when it failed or needs the card holder; "" otherwise
    created_us: int
    updated_us: int


class RefundRowOut(msgspec.Struct):
    """Money taken back from a client (a refund or a dispute), as the ledger holds it: the part its
    credit covered, and the part it could not (now owed, a receivable)."""

    key: str  # the ledger key of the move (Stripe's refund or dispute id is in it)
    client_id: str
    client_name: str
    kind: str  # refund | dispute
    payment_id: str | None
    from_credit_nano: int
    owed_nano: int
    at_us: int


class RechargesOut(msgspec.Struct):
    attempts: int  # auto-recharges asked of Stripe today
    succeeded: CountSum
    failed: CountSum  # declined, or waiting for the card holder (requires_action)
    in_flight: int  # open now, Stripe working on them
    failures: list[PaymentRowOut]  # today's failed ones, with Stripe's message


class InvoiceRowOut(msgspec.Struct):
    number: str  # "TM-2026-000123"
    client_id: str
    client_name: str  # as it was when issued
    period: str  # "2026-10": the month it covers
    issued_us: int
    usage_nano: int  # charged for requests in the period: the invoice's total
    payments_nano: int
    grants_nano: int
    refunds_nano: int
    opening_balance_nano: int
    closing_balance_nano: int


class ClientBillingOut(msgspec.Struct):
    """A client's auto-recharge settings and its money now. The recharge fields are null for a
    client that never touched billing (no settings stored)."""

    client_id: str
    name: str
    balance_nano: int  # prepaid credit posted
    available_nano: int  # balance minus holds of requests in flight
    owed_nano: int  # a refund or dispute its credit could not cover
    has_card: bool  # a card saved for off-session charges
    recharge_enabled: bool | None
    recharge_threshold_nano: int | None
    recharge_amount_nano: int | None
    recharge_monthly_cap_nano: int | None  # null: no cap (or no settings)
    recharge_failures: int | None  # in a row
    recharge_in_flight: str | None  # the payment Stripe is working on
    recharge_disabled_reason: str  # why we turned it off ("" when on, or off by the client)


class BillingOut(msgspec.Struct):
    now_us: int
    day_start_us: int  # "today" is the UTC day from here
    month: str  # "2026-11": the invoices issued in this UTC month
    payments: CountSum  # succeeded today (created today)
    payment_rows: list[PaymentRowOut]  # every payment created today, newest first
    refunds: CountSum  # refunds and disputes today (from credit and owed together)
    refund_rows: list[RefundRowOut]  # newest first
    recharges: RechargesOut
    invoices: list[InvoiceRowOut]  # issued this month, by number
    invoices_total_nano: int
    clients: list[ClientBillingOut]  # by name


class ModelDayProfitOut(msgspec.Struct):
    day: str  # "2026-11-25" (UTC)
    model: str | None  # null: GPU time of hosts that served no model
    requests: int
    revenue_nano: int
    host_shares_nano: int
    gpu_cost_nano: int
    profit_nano: int  # revenue - host shares - GPU cost - fees
    fees_nano: int = 0  # owed to the channel requests came through (OpenRouter's fee)
