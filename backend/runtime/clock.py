"""UTC time as integer microseconds since the Unix epoch: what the ledger stores."""

from __future__ import annotations

import datetime as dt
import time

# Set only by set_fixed_clock(): deterministic data (screenshots of the console, demos) needs every
# timestamp the backend writes to be known in advance.
_fixed: int | None = None


def now_us() -> int:
    return time.time_ns() // 1_000 if _fixed is None else _fixed


def set_fixed_clock(us: int | None) -> None:
    """Make now_us() return `us` until called again; None goes back to the real clock."""
    global _fixed
    _fixed = us


def from_us(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


def to_us(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: tokenmill keeps time in UTC, give a timezone")
    return int(when.timestamp() * 1_000_000)
