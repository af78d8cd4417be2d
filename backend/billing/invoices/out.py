"""Stored invoices as the API shows them (backend/wire/invoices.py)."""

from __future__ import annotations

from backend.billing.invoice_tables import Invoice, InvoiceLine
from backend.billing.invoices.cents import ROUNDING_NOTE, cents, usd
from backend.billing.invoices.service import RunResult
from backend.billing.invoices.statement import DIRECTION
from backend.billing.invoices.store import IssuedInvoice
from backend.wire.invoices import (
    InvoiceClientOut,
    InvoiceDuplicateOut,
    InvoiceFailureOut,
    InvoiceLineOut,
    InvoiceOut,
    InvoiceSummaryOut,
    InvoicingRunOut,
)

ADMIN_BASE = "/admin/invoices"
CLIENT_BASE = "/v1/me/invoices"


def adjustments_total(head: Invoice) -> int:
    """Not a column: what closes the balance equation (refunds and disputes the balance could not cover)."""
    return (head.opening_balance + head.payments_total + head.grants_total - head.usage_total - head.refunds_total
            - head.closing_balance)


def _summary_fields(head: Invoice, base: str) -> dict:
    adjustments = adjustments_total(head)
    return dict(
        number=head.number, seq=head.seq, client_id=head.client_id, client_name=head.client_name,
        period=head.period, period_start_us=head.period_start_us, period_end_us=head.period_end_us,
        issued_us=head.issued_us, currency=head.currency,
        opening_balance_nano=head.opening_balance, closing_balance_nano=head.closing_balance,
        usage_total_nano=head.usage_total, payments_total_nano=head.payments_total,
        grants_total_nano=head.grants_total, refunds_total_nano=head.refunds_total,
        adjustments_total_nano=adjustments,
        opening_balance_usd=usd(head.opening_balance), closing_balance_usd=usd(head.closing_balance),
        usage_total_usd=usd(head.usage_total), payments_total_usd=usd(head.payments_total),
        grants_total_usd=usd(head.grants_total), refunds_total_usd=usd(head.refunds_total),
        adjustments_total_usd=usd(adjustments),
        business_name=head.business_name, business_address=head.business_address, rounding=ROUNDING_NOTE,
        pdf_url=f"{base}/{head.number}.pdf", csv_url=f"{base}/{head.number}.csv",
    )


def summary_out(head: Invoice, base: str = ADMIN_BASE) -> InvoiceSummaryOut:
    return InvoiceSummaryOut(**_summary_fields(head, base))


def line_out(line: InvoiceLine) -> InvoiceLineOut:
    return InvoiceLineOut(
        position=line.position, kind=line.kind, description=line.description, amount_nano=line.amount,
        amount_usd=f"${cents(line.amount)}", effect_nano=DIRECTION[line.kind] * line.amount, model=line.model,
        price_prompt_per_mtok_nano=line.price_prompt_per_mtok,
        price_completion_per_mtok_nano=line.price_completion_per_mtok, requests=line.requests,
        prompt_tokens=line.prompt_tokens, completion_tokens=line.completion_tokens, occurred_us=line.occurred_us)


def invoice_out(inv: IssuedInvoice, base: str = ADMIN_BASE) -> InvoiceOut:
    return InvoiceOut(**_summary_fields(inv.head, base), lines=[line_out(x) for x in inv.lines])


def run_out(r: RunResult) -> InvoicingRunOut:
    return InvoicingRunOut(
        period=r.period.label, period_title=r.period.title, dry_run=r.dry_run, written=r.written,
        issued=[invoice_out(x) for x in r.issued],
        duplicates=[InvoiceDuplicateOut(d.client_id, d.client_name, d.number) for d in r.duplicates],
        failed=[InvoiceFailureOut(f.client_id, f.client_name, f.reason) for f in r.failed],
        pending=[InvoiceClientOut(p.client_id, p.client_name) for p in r.pending],
    )
