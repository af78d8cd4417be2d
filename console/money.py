"""Money for people: integer nano-USD in, text out (and decimal text in, validated). Never a
float: a float would turn $0.1 of credit into 0.1000000000000000055 dollars."""

from __future__ import annotations

import re

NANO = 10**9
_AMOUNT = re.compile(r"^\d{1,9}(\.\d{1,6})?$")


def usd(nano: int, places: int = 2) -> str:
    """`-1234567890123` -> `-$1,234.57` (half up, thousands separated)."""
    step = 10 ** (9 - places)
    units = (abs(nano) + step // 2) // step
    whole, frac = divmod(units, 10**places)
    text = f"${whole:,}" + (f".{frac:0{places}d}" if places else "")
    return "-" + text if nano < 0 else text


def parse_amount(text: str) -> str:
    """A positive decimal amount of dollars, as the API wants it (a string, up to 6 places).
    Raises ValueError with a message for the operator."""
    text = text.strip().removeprefix("$").replace(",", "")
    if not _AMOUNT.match(text):
        raise ValueError("Enter dollars as a decimal number, e.g. 25 or 25.50 (up to 6 decimals).")
    if not text.replace(".", "").strip("0"):
        raise ValueError("The amount must be more than zero.")
    return text
