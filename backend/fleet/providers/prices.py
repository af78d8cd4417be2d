"""Provider prices to integer nano-USD, exactly.

Providers send prices as JSON numbers (0.34, or Vast's 0.2466759259259259). http_api.py decodes
JSON numbers straight to Decimal, so the digits the provider sent are the digits we convert;
no binary float is ever involved. A price finer than one nano-USD is rounded *up*: a cost is
never understated.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

from backend.money import NANO_PER_USD, MoneyError

CENTS_TO_NANO = NANO_PER_USD // 100


def usd_to_nano(value: object, *, what: str = "price") -> int:
    """A USD amount (Decimal, int or decimal text) as nano-USD, rounded up to a whole nano."""
    if isinstance(value, bool | float):
        raise MoneyError(f"{what}: {value!r} is a float; provider prices must be decoded as Decimal")
    if isinstance(value, Decimal | int):
        dec = Decimal(value)
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip().removeprefix("$"))
        except InvalidOperation:
            raise MoneyError(f"{what}: {value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"{what}: expected a decimal amount, got {type(value).__name__}")
    if not dec.is_finite() or dec < 0:
        raise MoneyError(f"{what}: {value!r} is not a price")
    return int((dec * NANO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def cents_to_nano(value: object, *, what: str = "price") -> int:
    """Whole US cents (Lambda's price_cents_per_hour) as nano-USD."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MoneyError(f"{what}: expected a whole number of cents, got {value!r}")
    return value * CENTS_TO_NANO
