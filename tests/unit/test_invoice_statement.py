"""The pure part of invoicing: a client's month as lines (classified by transfer code), the balance
equation checked, the month an operator's date names, money rounded half-even only for display."""

from __future__ import annotations

import pytest

from backend.billing.invoices.cents import price, usd, usd_plain
from backend.billing.invoices.period import Period
from backend.billing.invoices.statement import LedgerFigures, Move, StatementError, UsageGroup, draft
from backend.field_errors import FieldError

USD = 10**9


def usage(model: str, pp: int, pc: int, charged: int, first_us: int, requests: int = 1) -> UsageGroup:
    return UsageGroup(model, pp, pc, requests, 100 * requests, 50 * requests, charged, first_us)


def test_lines_in_order_with_totals_and_the_balance_equation():
    u = [usage("m-b", 2, 3, 7 * USD, 50), usage("m-a", 5, 6, 3 * USD, 90), usage("m-a", 1, 2, 1 * USD, 10, 4)]
    moves = [Move("k3", "stripe_refund", 300, -2 * USD), Move("k1", "stripe_payment", 100, 20 * USD),
             Move("k2", "grant", 200, 10 * USD), Move("k0", "payment", 100, 1 * USD),
             Move("k4", "stripe_dispute", 400, -1 * USD), Move("k5", "receivable", 500, -4 * USD),
             Move("k6", "receivable_settled", 600, 0)]
    opening = 5 * USD
    closing = opening + 21 * USD + 10 * USD - 11 * USD - 3 * USD - 4 * USD
    d = draft(u, moves, LedgerFigures(opening, closing, 11 * USD))
    assert [(x.kind, x.model, x.price_prompt_per_mtok) for x in d.lines[:3]] == [
        ("usage", "m-a", 1), ("usage", "m-a", 5), ("usage", "m-b", 2)]  # per model, in order of first use
    assert [x.kind for x in d.lines[3:]] == ["payment", "payment", "grant", "refund", "dispute", "adjustment"]
    assert [x.occurred_us for x in d.lines[3:5]] == [100, 100]  # same instant: by key (k0 before k1)
    assert d.lines[3].description == "Payment received" and d.lines[4].description == "Card payment (Stripe)"
    assert d.lines[0].requests == 4  # a price is shown exactly, never rounded to the cent
    assert d.lines[0].description.startswith("m-a at $0.000000001 / $0.000000002 per 1M tokens")
    assert (d.usage_total, d.payments_total, d.grants_total, d.refunds_total, d.adjustments_total) == (
        11 * USD, 21 * USD, 10 * USD, 3 * USD, 4 * USD)
    assert d.opening + sum(x.signed for x in d.lines) == d.closing


def test_a_month_that_does_not_add_up_is_refused():
    u = [usage("m", 1, 1, 3 * USD, 1)]
    with pytest.raises(StatementError, match="closing balance"):
        draft(u, [], LedgerFigures(10 * USD, 8 * USD, 3 * USD))
    with pytest.raises(StatementError, match="usage events sum"):
        draft(u, [], LedgerFigures(10 * USD, 7 * USD, 2 * USD))
    with pytest.raises(StatementError, match="'mystery' is not one an invoice knows"):
        draft([], [Move("k", "mystery", 1, 5)], LedgerFigures(0, 5, 0))
    with pytest.raises(StatementError, match="a grant never does"):
        draft([], [Move("k", "grant", 1, -5)], LedgerFigures(5, 0, 0))


def test_the_month_a_date_names():
    assert Period.parse("2026-11") == Period.parse("2026-11-30") == Period(2026, 11)
    assert Period.parse("2026-12-01T00:30:00+02:00") == Period(2026, 11)  # 22:30 UTC on the 30th
    assert Period.parse("2026-11-30T23:30:00-01:00") == Period(2026, 12)
    assert Period.parse("2026-11-15T10:00:00") == Period(2026, 11)  # no offset: UTC
    p = Period(2026, 12)
    assert (p.label, p.title, p.next(), p.previous(), Period(2026, 1).previous()) == (
        "2026-12", "December 2026", Period(2027, 1), Period(2026, 11), Period(2025, 12))
    assert p.end_us - p.start_us == 31 * 86_400 * 10**6
    for bad in ("2026-13", "yesterday", "", "2026-02-30", "0001-01"):
        with pytest.raises(FieldError) as exc:
            Period.parse(bad, field="month")
        assert exc.value.field == "month"


def test_a_month_that_does_not_exist_is_refused_as_such_and_a_malformed_one_as_malformed():
    """'2026-13' is a well-formed YYYY-MM whose month does not exist: refused for that, naming the
    field (not as "not an ISO 8601 date"). 'YYYY-MM' is exactly four digits, '-', two digits."""
    for text, why in (("2026-13", "there is no month 13"), ("2026-00", "there is no month 00"),
                      ("1969-12", "1969 is not a year tokenmill bills")):
        with pytest.raises(FieldError) as exc:
            Period.parse(text, field="month")
        assert exc.value.field == "month" and why in str(exc.value) and "ISO 8601" not in str(exc.value)
    for malformed in ("2026- 1", "2026-+1", "2026-1", "+2026-01", "2026-1 1"):
        with pytest.raises(FieldError, match="is not an ISO 8601 date") as exc:
            Period.parse(malformed, field="month")
        assert exc.value.field == "month"
    assert Period.parse(" 2026-01 ") == Period(2026, 1)


def test_money_is_rounded_half_even_to_the_cent_only_when_shown():
    assert usd(5_000_000) == "$0.00" and usd(15_000_000) == "$0.02" and usd(25_000_000) == "$0.02"
    assert usd(25_000_001) == "$0.03" and usd(-1_234_567_890_123) == "-$1,234.57" and usd(-4_000_000) == "$0.00"
    assert usd_plain(-300_000_000) == "-0.30" and usd_plain(-1) == "0.00"
    assert price(150_000_000) == "$0.15" and price(37_500_000) == "$0.0375" and price(2_000 * USD) == "$2,000.00"
