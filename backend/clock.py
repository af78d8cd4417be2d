"""UTC time as integer microseconds since the Unix epoch: what the ledger stores."""

from __future__ import annotations

import datetime as dt
import time


def now_us() -> int:
    return time.time_ns() // 1_000


def from_us(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


def to_us(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: tokenmill keeps time in UTC, give a timezone")
    return int(when.timestamp() * 1_000_000)
