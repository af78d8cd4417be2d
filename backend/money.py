"""Money is integer nano-USD (1 USD = 10**9). Never a float, anywhere.

Prices are quoted per million tokens; a charge for N tokens is rounded *up* to the next
nano-USD so that the sum of many tiny charges never undercounts what was served.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

NANO_PER_USD = 1_000_000_000
TOKENS_PER_MTOK = 1_000_000

# Bounds far below int64 nano-USD (9.2e18, about $9.2 billion): no amount, no running sum the
# ledger caches and no audit adding those sums up can leave the databases' 64-bit integers
# (SQLite silently turns an overflowing sum into a float).
MAX_AMOUNT_NANO = 100_000_000 * NANO_PER_USD  # $100 million: one grant, payment, hold or charge
MAX_BALANCE_NANO = 1_000_000_000 * NANO_PER_USD  # $1 billion: what a client or host account may hold
# A running sum an account caches (a system account's lifetime revenue, say) only ever grows: it is
# bounded by int64 itself, less room for one more amount, not by a business limit that would stop
# the business one day.
MAX_RUNNING_SUM_NANO = 2**63 - 1 - MAX_AMOUNT_NANO
MAX_PRICE_NANO = 10_000 * NANO_PER_USD  # $10,000: a price per million tokens, a host's cost per hour


class MoneyError(ValueError):
    """A value that should be money is not (float, bad text, sign, precision)."""


def parse_usd(value: object, *, what: str = "amount", allow_zero: bool = True,
              max_nano: int = MAX_AMOUNT_NANO) -> int:
    """Parse a decimal USD amount given as text ("0.34") or an int into nano-USD, at most `max_nano`.

    Floats are refused: a binary float cannot hold 0.1 exactly, and money must be exact.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(
            f"{what}: {value!r} is a float; write money as a decimal string such as \"0.34\""
        )
    if isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip().removeprefix("$"))
        except InvalidOperation:
            raise MoneyError(f"{what}: {value!r} is not a decimal number") from None
        if not dec.is_finite():
            raise MoneyError(f"{what}: {value!r} is not a finite number")
    else:
        raise MoneyError(f"{what}: expected a decimal string such as \"0.34\", got {type(value).__name__}")
    # Compared before scaling: Decimal arithmetic rounds beyond 28 digits, comparison does not.
    if dec > Decimal(max_nano).scaleb(-9):
        raise MoneyError(f"{what}: {value!r} is above the largest accepted, {format_usd(max_nano, places=2)}")
    nano = dec * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise MoneyError(f"{what}: {value!r} has more precision than one nano-USD (9 decimals)")
    if nano < 0 or (nano == 0 and not allow_zero):
        raise MoneyError(f"{what}: {value!r} must be {'positive' if not allow_zero else 'zero or more'}")
    return int(nano)


def require_nano(value: object, *, what: str = "amount", max_nano: int = MAX_AMOUNT_NANO) -> int:
    """Check that a value is a positive integer count of nano-USD, at most `max_nano` (the
    ledger's input rule)."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a float" if isinstance(value, float) else type(value).__name__
        raise MoneyError(f"{what}: money must be an integer number of nano-USD, got {kind} {value!r}")
    if value <= 0:
        raise MoneyError(f"{what}: must be positive, got {value}")
    if value > max_nano:
        raise MoneyError(f"{what}: {format_usd(value, places=2)} is above the largest accepted, "
                         f"{format_usd(max_nano, places=2)}")
    return value


def format_usd(nano: int, *, places: int = 6) -> str:
    """Render nano-USD for people: "$1.234567". Exact (Decimal), never through float."""
    q = Decimal(nano) / NANO_PER_USD
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.{places}f}"


def cost_of_tokens(tokens: int, price_per_mtok: int) -> int:
    """Charge for `tokens` at `price_per_mtok` nano-USD per million tokens, rounded up."""
    if tokens < 0:
        raise MoneyError(f"token count must not be negative, got {tokens}")
    return -(-tokens * price_per_mtok // TOKENS_PER_MTOK)
