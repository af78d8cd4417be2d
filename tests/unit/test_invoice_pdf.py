"""An invoice's PDF and CSV, rendered from its rows and read back: the PDF's text (pypdf) carries the
number, the seller, the client, every line and the totals, rounded half-even to the cent with the
rounding stated; the CSV carries the same lines exactly and ends with the rounding note; a re-render
gives the same bytes."""

from __future__ import annotations

import csv
import io

import pypdf

from backend.billing.invoice_tables import Invoice, InvoiceLine
from backend.billing.invoices.cents import ROUNDING_NOTE
from backend.billing.invoices.period import Period
from backend.billing.invoices.render_csv import render_csv
from backend.billing.invoices.render_pdf import render_pdf
from backend.billing.invoices.store import IssuedInvoice

USD = 10**9
NOV = Period(2026, 11)
DAY_US = 86_400 * 10**6


def invoice(client_name: str = "Acme Research", *, refund: int = 2 * USD, extra_usage: int = 0) -> IssuedInvoice:
    lines = [
        InvoiceLine(invoice_id=0, position=1, kind="usage", description="qwen at $0.15 / $0.60", model="qwen",
                    price_prompt_per_mtok=150_000_000, price_completion_per_mtok=600_000_000, requests=1_200,
                    prompt_tokens=1_000_000, completion_tokens=2_000_000, amount=1_350_000_000),
        InvoiceLine(invoice_id=0, position=2, kind="usage", description="qwen at $0.175 / $0.70", model="qwen",
                    price_prompt_per_mtok=175_000_000, price_completion_per_mtok=700_000_000, requests=3,
                    prompt_tokens=3_000, completion_tokens=1_500, amount=1_575_000),  # $0.001575: shows $0.00
        InvoiceLine(invoice_id=0, position=3, kind="payment", description="Card payment (Stripe)",
                    occurred_us=NOV.start_us + 3 * DAY_US, amount=20 * USD),
        InvoiceLine(invoice_id=0, position=4, kind="grant", description="Credit granted",
                    occurred_us=NOV.start_us + 5 * DAY_US, amount=10 * USD),
        InvoiceLine(invoice_id=0, position=5, kind="refund", description="Card payment refunded",
                    occurred_us=NOV.start_us + 9 * DAY_US, amount=refund),
    ]
    for i in range(extra_usage):
        lines.insert(2 + i, InvoiceLine(invoice_id=0, position=0, kind="usage", description="", model=f"model-{i:03d}",
                                        price_prompt_per_mtok=USD, price_completion_per_mtok=USD, requests=1,
                                        prompt_tokens=1, completion_tokens=1, amount=2_000))
    for i, line in enumerate(lines, start=1):
        line.position = i
    usage = sum(x.amount for x in lines if x.kind == "usage")
    opening = 5 * USD
    head = Invoice(seq=123, number="TM-2026-000123", client_id="acme", client_name=client_name, period=NOV.label,
                   period_start_us=NOV.start_us, period_end_us=NOV.end_us, issued_us=NOV.end_us + DAY_US,
                   opening_balance=opening, closing_balance=opening + 30 * USD - usage - refund, usage_total=usage,
                   payments_total=20 * USD, grants_total=10 * USD, refunds_total=refund,
                   business_name="Tokenmill Inference Ltd", business_address="1 Example Street\nLondon EC1A 1AA")
    return IssuedInvoice(head, lines)


def pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(body)).pages)


def test_the_pdf_reads_back_with_its_number_lines_and_totals():
    body = render_pdf(invoice())
    assert body.startswith(b"%PDF-")
    text = pdf_text(body)
    for expected in ("INVOICE", "TM-2026-000123", "Tokenmill Inference Ltd", "1 Example Street", "London EC1A 1AA",
                     "Acme Research", "Client id: acme", "November 2026 (UTC)", "01 Nov 2026 to 30 Nov 2026",
                     "Issue date 02 Dec 2026 00:00 UTC",
                     "Opening balance (start of 01 Nov 2026) $5.00", "Payments received + $20.00",
                     "Credit granted + $10.00", "Usage charged (this invoice's total) - $1.35",
                     "Refunds and disputes - $2.00", "Closing balance (end of 30 Nov 2026) $31.65",
                     "qwen $0.15 $0.60 1,200 1,000,000 2,000,000 $1.35",
                     "qwen $0.175 $0.70 3 3,000 1,500 $0.00",
                     "Total usage 1,203 1,003,000 2,001,500 $1.35",
                     "04 Nov 2026 00:00 UTC Card payment (Stripe) payment + $20.00",
                     "06 Nov 2026 00:00 UTC Credit granted grant + $10.00",
                     "10 Nov 2026 00:00 UTC Card payment refunded refund - $2.00",
                     "Nothing is due", "rounded half-even to the cent", "computed from the unrounded amounts",
                     "page 1 of 1"):
        assert expected in text, expected
    assert "beyond the balance" not in text  # no such adjustment this month


def test_a_re_render_is_the_same_document():
    assert render_pdf(invoice()) == render_pdf(invoice())
    assert render_csv(invoice()) == render_csv(invoice())


def test_an_owed_balance_and_a_name_outside_latin_1():
    inv = invoice("Café Zürich ŁÓDŹ 東京", refund=40 * USD)
    inv.head.refunds_total -= 5 * USD  # 35 of the refund came from the balance, 5 went beyond it: owed
    text = pdf_text(render_pdf(inv))
    assert "Café Zürich LÓDZ ??" in text  # nearest Latin letters; the CSV and the API keep the name
    assert "Refunds and disputes beyond the balance (owed) - $5.00" in text
    assert "Amount due: $6.35" in text and "Closing balance (end of 30 Nov 2026) -$6.35" in text


def test_a_long_invoice_runs_over_pages_with_every_line():
    inv = invoice(extra_usage=120)
    text = pdf_text(render_pdf(inv))
    pages = len(pypdf.PdfReader(io.BytesIO(render_pdf(inv))).pages)
    assert pages > 1 and all(f"page {n} of {pages}" in text for n in range(1, pages + 1))
    assert text.count("Model Prompt /1M Completion /1M") == pages - 1  # the table's heading on every page it spans
    assert all(f"model-{i:03d} " in text for i in range(120))
    assert "Total usage" in text and "10 Nov 2026 00:00 UTC Card payment refunded" in text


def test_the_csv_has_the_same_lines_exactly_from_opening_to_closing():
    inv = invoice("Café Zürich 東京")
    rows = list(csv.DictReader(io.StringIO(render_csv(inv).decode())))
    assert [r["kind"] for r in rows] == ["opening_balance", "usage", "usage", "payment", "grant", "refund",
                                         "closing_balance", "note"]
    assert {r["invoice_number"] for r in rows} == {"TM-2026-000123"}
    usage = rows[2]
    assert (usage["model"], usage["price_prompt_per_mtok_nano"], usage["requests"], usage["amount_nano"],
            usage["amount_usd"], usage["effect_nano"]) == ("qwen", "175000000", "3", "1575000", "0.00", "-1575000")
    assert rows[3]["occurred_utc"] == "2026-11-04T00:00:00.000000Z" and rows[3]["effect_usd"] == "20.00"
    opening, closing = int(rows[0]["amount_nano"]), int(rows[-2]["amount_nano"])
    assert opening + sum(int(r["effect_nano"]) for r in rows[1:-2]) == closing == inv.head.closing_balance
    assert rows[-1]["description"] == ROUNDING_NOTE  # the *_usd columns are rounded each on its own
