"""The calendar month an invoice bills (UTC): its bounds in µs, its label, and how a date given by
the operator ("2026-11", "2026-11-17", "2026-11-17T08:00:00+02:00") names one."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from backend.field_errors import FieldError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_YEAR_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")  # ASCII digits only: not "2026- 1" or "2026-+1"
FIRST_YEAR, LAST_YEAR = 1970, 2099


def utc_us(when: dt.datetime) -> int:
    """Exact µs since the epoch (no float on the way)."""
    return (when - _EPOCH) // _US


def utc_at(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"there is no month {self.month:02d} (months run from 01 to 12)")
        if not FIRST_YEAR <= self.year <= LAST_YEAR:
            raise ValueError(f"{self.year} is not a year tokenmill bills ({FIRST_YEAR} to {LAST_YEAR})")

    @classmethod
    def containing(cls, us: int) -> Period:
        when = utc_at(us)
        return cls(when.year, when.month)

    @classmethod
    def parse(cls, text: str, *, field: str = "date") -> Period:
        """The month of an ISO 8601 date or time (an offset is turned into UTC first), or "YYYY-MM".
        A well-formed month or date that does not exist ("2026-13", "1900-01") is refused as such,
        naming `field`; anything else not ISO 8601 is refused as that."""
        s = (text or "").strip()
        if _YEAR_MONTH.fullmatch(s):
            year, month = int(s[:4]), int(s[5:])
        else:
            try:
                when = dt.date.fromisoformat(s) if len(s) == 10 else dt.datetime.fromisoformat(s)
            except ValueError:
                raise FieldError(field, f"{text!r} is not an ISO 8601 date (2026-11-17), time, or month "
                                        "(2026-11)") from None
            if isinstance(when, dt.datetime) and when.tzinfo is not None:
                when = when.astimezone(dt.UTC)
            year, month = when.year, when.month
        try:
            return cls(year, month)
        except ValueError as exc:
            raise FieldError(field, f"{text!r}: {exc}") from None

    @property
    def label(self) -> str:
        """"2026-11": what the invoice table stores."""
        return f"{self.year}-{self.month:02d}"

    @property
    def title(self) -> str:
        """"November 2026": what a person reads."""
        return dt.date(self.year, self.month, 1).strftime("%B %Y")

    @property
    def start_us(self) -> int:
        return utc_us(dt.datetime(self.year, self.month, 1, tzinfo=dt.UTC))

    @property
    def end_us(self) -> int:
        """The next month's first instant: the period is [start_us, end_us)."""
        return self.next().start_us

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __str__(self) -> str:
        return self.label
