"""An invoice as a PDF (fpdf2): the seller, the client, the number and period, the month's usage per
model and price, the account's activity, the balance from opening to closing, and how amounts are
rounded. Drawn from the stored rows only, with the issue time as the document's creation date, so
a re-render is the same document.

fpdf2's built-in Helvetica needs no font file on the machine; it writes Latin-1, so a name in
another script is written with the nearest Latin letters where Unicode gives them ("?" otherwise;
the CSV and the API keep the name as it is)."""

from __future__ import annotations

import unicodedata

from fpdf import FPDF
from fpdf.enums import TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace

from backend.billing.invoices.cents import ROUNDING_NOTE, cents, price, usd
from backend.billing.invoices.out import adjustments_total
from backend.billing.invoices.period import Period, utc_at
from backend.billing.invoices.store import IssuedInvoice

FONT = "Helvetica"
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
SHADE = (241, 243, 245)
WIDTH = 180  # mm between the margins of an A4 page


# Latin letters Unicode does not decompose into a base letter and a mark, and typographic punctuation.
_PLAIN = {"\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0152": "OE", "\u0153": "oe",
          "\u0131": "i", "\u0166": "T", "\u0167": "t", "\u0126": "H", "\u0127": "h", "\u2013": "-", "\u2014": "-",
          "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."}


def latin1(text: str) -> str:
    out = []
    for ch in text:
        ch = _PLAIN.get(ch, ch)
        try:
            ch.encode("latin-1")
            out.append(ch)
            continue
        except UnicodeEncodeError:
            pass
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        try:
            out.append(base.encode("latin-1").decode("latin-1") if base else "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


def _day(us: int) -> str:
    return utc_at(us).strftime("%d %b %Y")


def _stamp(us: int) -> str:
    return utc_at(us).strftime("%d %b %Y %H:%M UTC")


def _count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


class _Page(FPDF):
    def __init__(self, number: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.number = number
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=22)
        self.alias_nb_pages()

    def footer(self) -> None:
        self.set_y(-19)
        self.set_draw_color(*RULE)
        self.line(15, self.get_y(), 15 + WIDTH, self.get_y())
        self.ln(1.5)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.multi_cell(WIDTH, 3.6, ROUNDING_NOTE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.cell(WIDTH, 3.6, f"{self.number}, page {self.page_no()} of {{nb}}", align="R")


def _text(pdf: FPDF, size: float, style: str = "", color: tuple[int, int, int] = INK) -> None:
    pdf.set_font(FONT, style, size)
    pdf.set_text_color(*color)


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(5)
    _text(pdf, 11, "B")
    pdf.cell(WIDTH, 6, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _header(pdf: _Page, inv: IssuedInvoice) -> None:
    h = inv.head
    top = pdf.get_y()
    _text(pdf, 14, "B")
    pdf.multi_cell(110, 7, latin1(h.business_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 9, "", MUTED)
    for line in filter(None, (x.strip() for x in h.business_address.replace("\\n", "\n").splitlines())):
        pdf.multi_cell(110, 4.5, latin1(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    pdf.set_xy(125, top)
    _text(pdf, 20, "B")
    pdf.cell(70, 9, "INVOICE", align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    _text(pdf, 11, "B")
    pdf.set_x(125)
    pdf.cell(70, 6, h.number, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)
    pdf.set_draw_color(*RULE)
    pdf.line(15, pdf.get_y(), 15 + WIDTH, pdf.get_y())
    pdf.ln(4)

    top = pdf.get_y()
    _text(pdf, 8, "B", MUTED)
    pdf.cell(90, 4.5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 11, "B")
    pdf.multi_cell(90, 5.5, latin1(h.client_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 9, "", MUTED)
    pdf.cell(90, 4.5, latin1(f"Client id: {h.client_id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    period = Period.parse(h.period)
    facts = (("Invoice number", h.number), ("Period", f"{period.title} (UTC)"),
             ("Period dates", f"{_day(h.period_start_us)} to {_day(h.period_end_us - 1)}"),
             ("Issue date", _stamp(h.issued_us)), ("Currency", h.currency.upper()))
    pdf.set_xy(110, top)
    for label, value in facts:
        pdf.set_x(110)
        _text(pdf, 9, "", MUTED)
        pdf.cell(30, 5, label)
        _text(pdf, 9, "B")
        pdf.cell(55, 5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()))


def _summary(pdf: FPDF, inv: IssuedInvoice) -> None:
    h = inv.head
    _heading(pdf, "Summary")
    rows = [
        (f"Opening balance (start of {_day(h.period_start_us)})", "", h.opening_balance),
        ("Payments received", "+", h.payments_total),
        ("Credit granted", "+", h.grants_total),
        ("Usage charged (this invoice's total)", "-", h.usage_total),
        ("Refunds and disputes", "-", h.refunds_total),
    ]
    if adjustments_total(h):  # only where a refund or dispute exceeded the balance
        rows.append(("Refunds and disputes beyond the balance (owed)", "-", adjustments_total(h)))
    for label, sign, amount in rows:
        _text(pdf, 9.5)
        pdf.cell(140, 5.5, label)
        shown = usd(amount) if not sign else f"{sign} ${cents(amount)}"
        pdf.cell(40, 5.5, shown, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*INK)
    pdf.line(15 + 110, pdf.get_y() + 0.5, 15 + WIDTH, pdf.get_y() + 0.5)
    pdf.ln(1.5)
    _text(pdf, 10.5, "B")
    pdf.cell(140, 6.5, f"Closing balance (end of {_day(h.period_end_us - 1)})")
    pdf.cell(40, 6.5, usd(h.closing_balance), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 9, "", MUTED)
    if h.closing_balance < 0:
        note = f"Amount due: {usd(-h.closing_balance)} (refunds or disputes beyond the prepaid balance)."
    else:
        note = "Nothing is due: usage is drawn from the prepaid balance, paid in advance."
    pdf.cell(WIDTH, 5, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: FPDF, widths: tuple[int, ...], align: tuple[str, ...], head: tuple[str, ...],
           rows: list[tuple[str, ...]], total: tuple[str, ...] | None = None) -> None:
    _text(pdf, 8.5)
    with pdf.table(width=WIDTH, col_widths=widths, text_align=align, line_height=4.6, padding=(1.2, 1.5),
                   borders_layout=TableBordersLayout.HORIZONTAL_LINES, first_row_as_headings=True,
                   headings_style=FontFace(emphasis="BOLD", color=INK, fill_color=SHADE),
                   align="LEFT") as table:
        table.row(head)
        for r in rows:
            table.row([latin1(c) for c in r])
        if total is not None:
            table.row(total, style=FontFace(emphasis="BOLD"))


def _usage(pdf: FPDF, inv: IssuedInvoice) -> None:
    lines = [x for x in inv.lines if x.kind == "usage"]
    _heading(pdf, "Usage by model and price")
    if not lines:
        _text(pdf, 9, "", MUTED)
        pdf.cell(WIDTH, 5, "No requests this month.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    rows = [(x.model or "", price(x.price_prompt_per_mtok or 0), price(x.price_completion_per_mtok or 0),
             _count(x.requests), _count(x.prompt_tokens), _count(x.completion_tokens), f"${cents(x.amount)}")
            for x in lines]
    total = ("Total usage", "", "", _count(sum(x.requests or 0 for x in lines)),
             _count(sum(x.prompt_tokens or 0 for x in lines)), _count(sum(x.completion_tokens or 0 for x in lines)),
             usd(inv.head.usage_total))
    _table(pdf, (46, 20, 26, 18, 24, 28, 18), ("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
           ("Model", "Prompt /1M", "Completion /1M", "Requests", "Prompt tokens", "Completion tokens", "Amount"),
           rows, total)


def _activity(pdf: FPDF, inv: IssuedInvoice) -> None:
    lines = [x for x in inv.lines if x.kind != "usage"]
    _heading(pdf, "Payments, credits and refunds")
    if not lines:
        _text(pdf, 9, "", MUTED)
        pdf.cell(WIDTH, 5, "None this month.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    sign = {"payment": "+", "grant": "+"}
    rows = [(_stamp(x.occurred_us) if x.occurred_us is not None else "", x.description, x.kind,
             f"{sign.get(x.kind, '-')} ${cents(x.amount)}") for x in lines]
    _table(pdf, (40, 90, 25, 25), ("LEFT", "LEFT", "LEFT", "RIGHT"), ("Date", "Description", "Kind", "Amount"), rows)


def render_pdf(inv: IssuedInvoice) -> bytes:
    pdf = _Page(inv.head.number)
    pdf.set_title(f"Invoice {inv.head.number}")
    pdf.set_author(latin1(inv.head.business_name))
    pdf.set_creator("tokenmill")
    pdf.set_producer("tokenmill")
    pdf.set_creation_date(utc_at(inv.head.issued_us))
    pdf.add_page()
    _header(pdf, inv)
    _summary(pdf, inv)
    _usage(pdf, inv)
    _activity(pdf, inv)
    return bytes(pdf.output())
