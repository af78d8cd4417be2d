"""How an invoice shows money: amounts are summed exactly in nano-USD and rounded to the cent only
where a person reads them, half to even, each figure on its own (a total is never the sum of
rounded lines, so a column of rounded lines may differ from its total by a cent or so)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from backend.money import NANO_PER_USD

ROUNDING_NOTE = ("Amounts are in USD, rounded half-even to the cent; totals and balances are computed "
                 "from the unrounded amounts (exact to 0.000000001 USD).")
_CENT = Decimal("0.01")


def cents(nano: int) -> str:
    """"1,234.57" (no sign, no symbol): for tables that state the sign apart."""
    q = (Decimal(abs(nano)) / NANO_PER_USD).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return f"{q:,.2f}"


def usd(nano: int) -> str:
    """"$1,234.57" or "-$0.30": rounded half-even to the cent."""
    return f"{'-' if nano < 0 and cents(nano) != '0.00' else ''}${cents(nano)}"


def usd_plain(nano: int) -> str:
    """"1234.57" / "-0.30": a CSV cell a spreadsheet reads as a number."""
    q = (Decimal(nano) / NANO_PER_USD).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return f"{q:.2f}" if q != 0 else "0.00"


def price(nano_per_mtok: int) -> str:
    """A price per million tokens, exact, with at least two decimals: "$0.15", "$0.0375"."""
    q = Decimal(nano_per_mtok) / NANO_PER_USD
    text = f"{q:.9f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${int(whole):,}.{frac.ljust(2, '0')}"
