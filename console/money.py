"""Money for people: integer nano-USD in, text out (and decimal text in, validated). Never a
float: a float would turn $0.1 of credit into 0.1000000000000000055 dollars."""

from __future__ import annotations

import re

NANO = 10**9
# One precision everywhere on screen, so amounts line up and compare at a glance; a hundredth of
# a cent, so what a few requests bring in still shows.
PLACES = 4
_AMOUNT = re.compile(r"^\d{1,9}(\.\d{1,6})?$")


def usd(nano: int) -> str:
    """`-1234567890123` -> `-$1,234.5679` (half up, thousands separated)."""
    step = 10 ** (9 - PLACES)
    units = (abs(nano) + step // 2) // step
    whole, frac = divmod(units, 10**PLACES)
    text = f"${whole:,}.{frac:0{PLACES}d}"
    return "-" + text if nano < 0 and units else text  # what rounds to zero is not shown as negative


def parse_amount(text: str) -> str:
    """A positive decimal amount of dollars, as the API wants it (a string, up to 6 places).
    Raises ValueError with a message for the operator."""
    text = text.strip().removeprefix("$").replace(",", "")
    if not _AMOUNT.match(text):
        raise ValueError("Enter dollars as a decimal number, e.g. 25 or 25.50 (up to 6 decimals).")
    if not text.replace(".", "").strip("0"):
        raise ValueError("The amount must be more than zero.")
    return text
