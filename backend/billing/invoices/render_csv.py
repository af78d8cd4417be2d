"""An invoice as CSV, beside its PDF: the same lines, money both exact (nano-USD) and rounded to the
cent. The first row is the opening balance and the last the closing balance (their `amount_*` is the
balance, signed; negative is owed); every line between has its unsigned amount and its signed
`effect_*` on the balance, so opening + the sum of effect_nano = closing. The `*_usd` columns are
each rounded on their own, so they need not add up to the cent: the row after the closing balance
(kind "note") says so in its description (ROUNDING_NOTE, as the PDF and the JSON do). Rendered
from the stored rows only: the same invoice always gives the same bytes."""

from __future__ import annotations

import csv
import io

from backend.billing.invoices.cents import ROUNDING_NOTE, usd_plain
from backend.billing.invoices.period import utc_at
from backend.billing.invoices.statement import DIRECTION
from backend.billing.invoices.store import IssuedInvoice

COLUMNS = ("invoice_number", "period", "position", "kind", "description", "model",
           "price_prompt_per_mtok_nano", "price_completion_per_mtok_nano", "requests", "prompt_tokens",
           "completion_tokens", "occurred_utc", "amount_nano", "amount_usd", "effect_nano", "effect_usd")


def _when(us: int | None) -> str:
    return "" if us is None else utc_at(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _blank(v: object) -> object:
    return "" if v is None else v


def render_csv(inv: IssuedInvoice) -> bytes:
    h = inv.head
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerow((h.number, h.period, "", "opening_balance", "Opening balance", "", "", "", "",
                "", "", _when(h.period_start_us), h.opening_balance, usd_plain(h.opening_balance), "", ""))
    for x in inv.lines:
        effect = DIRECTION[x.kind] * x.amount
        w.writerow((h.number, h.period, x.position, x.kind, x.description, _blank(x.model),
                    _blank(x.price_prompt_per_mtok), _blank(x.price_completion_per_mtok), _blank(x.requests),
                    _blank(x.prompt_tokens), _blank(x.completion_tokens), _when(x.occurred_us), x.amount,
                    usd_plain(x.amount), effect, usd_plain(effect)))
    w.writerow((h.number, h.period, "", "closing_balance", "Closing balance", "", "", "", "",
                "", "", _when(h.period_end_us), h.closing_balance, usd_plain(h.closing_balance), "", ""))
    w.writerow((h.number, h.period, "", "note", ROUNDING_NOTE, *[""] * (len(COLUMNS) - 5)))
    return buf.getvalue().encode()
