"""The calendar month an invoice bills (UTC): its bounds in µs, its label, and how a date given by
the operator ("2026-11", "2026-11-17", "2026-11-17T08:00:00+02:00") names one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from backend.field_errors import FieldError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


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
        if not (1970 <= self.year <= 2099 and 1 <= self.month <= 12):
            raise ValueError(f"not a month tokenmill bills: {self.year}-{self.month:02d}")

    @classmethod
    def containing(cls, us: int) -> Period:
        when = utc_at(us)
        return cls(when.year, when.month)

    @classmethod
    def parse(cls, text: str, *, field: str = "date") -> Period:
        """The month of an ISO 8601 date or time (an offset is turned into UTC first), or "YYYY-MM"."""
        s = (text or "").strip()
        try:
            if len(s) == 7 and s[4] == "-":
                return cls(int(s[:4]), int(s[5:]))
            if len(s) == 10:
                d = dt.date.fromisoformat(s)
                return cls(d.year, d.month)
            when = dt.datetime.fromisoformat(s)
        except ValueError:
            raise FieldError(field, f"{text!r} is not an ISO 8601 date (2026-11-17), time, or month (2026-11)") \
                from None
        if when.tzinfo is not None:
            when = when.astimezone(dt.UTC)
        try:
            return cls(when.year, when.month)
        except ValueError as exc:
            raise FieldError(field, str(exc)) from None

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
