"""Shapes of the invoice API: the admin's (GET /admin/invoices, POST /admin/invoicing/generate) and
the client's (GET /v1/me/invoices). Money is integer nano-USD in `*_nano` fields, summed exactly;
the `*_usd` text beside it is rounded half-even to the cent, as the invoice shows it (`rounding`
says so). A balance is the client's prepaid credit less what it owes: negative means owed."""

from __future__ import annotations

from typing import Literal

import msgspec

DryRun = Literal["all", "validate", "none"]
LineKind = Literal["usage", "payment", "grant", "refund", "dispute", "adjustment"]


class InvoiceLineOut(msgspec.Struct):
    position: int
    kind: LineKind  # usage charges; payment and grant add to the balance; refund, dispute, adjustment take
    description: str
    amount_nano: int  # >= 0: `kind` says which way it moved the balance
    amount_usd: str  # rounded to the cent
    effect_nano: int  # signed: what the line did to the balance
    model: str | None = None  # usage lines: one model at one price
    price_prompt_per_mtok_nano: int | None = None
    price_completion_per_mtok_nano: int | None = None
    requests: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    occurred_us: int | None = None  # the other lines: when it happened (UTC µs)


class InvoiceSummaryOut(msgspec.Struct):
    number: str  # PREFIX-YYYY-NNNNNN (year of issue); in a dry run, the number it would take
    seq: int
    client_id: str
    client_name: str
    period: str  # "2026-11": the calendar month billed (UTC)
    period_start_us: int
    period_end_us: int  # exclusive
    issued_us: int
    currency: str
    opening_balance_nano: int
    closing_balance_nano: int  # = opening + payments + grants - usage - refunds - adjustments
    usage_total_nano: int  # what the month's requests were charged: the invoice's total
    payments_total_nano: int
    grants_total_nano: int
    refunds_total_nano: int  # refunds and disputes
    adjustments_total_nano: int  # refunds and disputes beyond the balance, now owed
    opening_balance_usd: str
    closing_balance_usd: str
    usage_total_usd: str
    payments_total_usd: str
    grants_total_usd: str
    refunds_total_usd: str
    adjustments_total_usd: str
    business_name: str
    business_address: str
    rounding: str  # the rounding statement the document carries
    pdf_url: str  # relative to the API's base address
    csv_url: str


class InvoiceOut(InvoiceSummaryOut):
    lines: list[InvoiceLineOut] = []


class InvoiceClientOut(msgspec.Struct):
    client_id: str
    client_name: str


class InvoiceDuplicateOut(msgspec.Struct):
    """A client that already has its invoice for the period: nothing more is issued for it."""

    client_id: str
    client_name: str
    number: str


class InvoiceFailureOut(msgspec.Struct):
    """A client whose month could not be stated as an invoice that adds up: none was issued."""

    client_id: str
    client_name: str
    reason: str


class InvoicingRunOut(msgspec.Struct):
    """What a generation did: dry_run "none" issued `issued`; "all" wrote nothing and shows what it
    would issue (numbers included, as they would be now); "validate" only looked for duplicates and
    lists in `pending` the clients a full run would invoice."""

    period: str
    period_title: str  # "November 2026"
    dry_run: DryRun
    written: bool  # whether anything was written (only dry_run "none" writes)
    issued: list[InvoiceOut]
    duplicates: list[InvoiceDuplicateOut]
    failed: list[InvoiceFailureOut]
    pending: list[InvoiceClientOut] = []


class MyInvoicesOut(msgspec.Struct):
    """GET /v1/me/invoices: the calling client's invoices, newest first."""

    data: list[InvoiceSummaryOut]
    object: Literal["list"] = "list"
