"""The Billing view's top lines: today's Stripe payments and refunds, today's auto-recharges (asked,
paid, failed, in flight) and this month's invoices, each as a count and a sum. Words, not colour
alone, so it reads the same with NO_COLOR; `N/A` before the first answer."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.widgets import Static

from backend.wire.billing_admin import BillingOut, CountSum
from console.figures import NA
from console.money import usd


def count_sum(c: CountSum, noun: str) -> str:
    return f"{c.count:,} {noun}{'' if c.count == 1 else 's'} {usd(c.sum_nano)}"


def month_name(month: str) -> str:
    """"2026-11" -> "November 2026"."""
    try:
        return dt.date.fromisoformat(f"{month}-01").strftime("%B %Y")
    except ValueError:
        return month


def summary_text(b: BillingOut | None) -> Text:
    if b is None:
        return Text(f"today (UTC)  payments {NA}  refunds {NA}  auto-recharges {NA}\ninvoices {NA}")
    r = b.recharges
    text = Text()
    text.append("today (UTC) ", "bold")
    text.append(f" in: {count_sum(b.payments, 'payment')}   back: {count_sum(b.refunds, 'refund')}\n")
    text.append("recharges ", "bold")
    text.append(f" {r.attempts:,} asked, {r.succeeded.count:,} paid {usd(r.succeeded.sum_nano)}, ")
    text.append(f"{r.failed.count:,} failed {usd(r.failed.sum_nano)}", "bold" if r.failed.count else "")
    text.append(f", {r.in_flight:,} in flight\n")
    text.append(f"{month_name(b.month)} ", "bold")
    text.append(f" {len(b.invoices):,} invoice{'' if len(b.invoices) == 1 else 's'} issued, "
                f"{usd(b.invoices_total_nano)} billed")
    return text


class BillingSummary(Static):
    DEFAULT_CSS = "BillingSummary { height: auto; padding: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(summary_text(None), **kwargs)

    def show(self, b: BillingOut) -> None:
        self.update(summary_text(b))
