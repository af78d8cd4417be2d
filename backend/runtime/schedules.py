"""Calendar rules: when a schedule is due ("the 2nd of each month at 00:00 UTC").

Deliberately small, not cron: monthly, daily and hourly rules cover invoices, payouts and daily
reports. A rule answers two questions, both in UTC microseconds:
- `next_after(t)`: the first scheduled instant strictly after t (when to wake up next);
- `last_at_or_before(t)`: the latest scheduled instant at or before t (was one missed?).
Months without the day (the 31st in April) are skipped, as cron skips them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from backend.runtime.clock import from_us, to_us


@dataclass(frozen=True, slots=True)
class Monthly:
    day: int = 1
    hour: int = 0
    minute: int = 0

    def __post_init__(self) -> None:
        if not (1 <= self.day <= 31 and 0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(f"not a monthly time: day {self.day} {self.hour:02d}:{self.minute:02d}")

    def describe(self) -> str:
        return f"monthly on day {self.day} at {self.hour:02d}:{self.minute:02d} UTC"

    def _in_month(self, year: int, month: int) -> dt.datetime | None:
        try:
            return dt.datetime(year, month, self.day, self.hour, self.minute, tzinfo=dt.UTC)
        except ValueError:  # no such day in that month
            return None

    def _months(self, t: dt.datetime, step: int):
        year, month = t.year, t.month
        for _ in range(25):  # any day 1..31 occurs within 2 years
            yield year, month
            month += step
            if month == 13:
                year, month = year + 1, 1
            elif month == 0:
                year, month = year - 1, 12

    def next_after(self, t_us: int) -> int:
        t = from_us(t_us)
        for year, month in self._months(t, 1):
            when = self._in_month(year, month)
            if when is not None and to_us(when) > t_us:
                return to_us(when)
        raise AssertionError("unreachable")  # pragma: no cover

    def last_at_or_before(self, t_us: int) -> int:
        t = from_us(t_us)
        for year, month in self._months(t, -1):
            when = self._in_month(year, month)
            if when is not None and to_us(when) <= t_us:
                return to_us(when)
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Daily:
    hour: int = 0
    minute: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(f"not a daily time: {self.hour:02d}:{self.minute:02d}")

    def describe(self) -> str:
        return f"daily at {self.hour:02d}:{self.minute:02d} UTC"

    def last_at_or_before(self, t_us: int) -> int:
        t = from_us(t_us)
        when = t.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if to_us(when) > t_us:
            when -= dt.timedelta(days=1)
        return to_us(when)

    def next_after(self, t_us: int) -> int:
        return to_us(from_us(self.last_at_or_before(t_us)) + dt.timedelta(days=1))


@dataclass(frozen=True, slots=True)
class Hourly:
    minute: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.minute < 60:
            raise ValueError(f"not a minute: {self.minute}")

    def describe(self) -> str:
        return f"hourly at :{self.minute:02d}"

    def last_at_or_before(self, t_us: int) -> int:
        t = from_us(t_us)
        when = t.replace(minute=self.minute, second=0, microsecond=0)
        if to_us(when) > t_us:
            when -= dt.timedelta(hours=1)
        return to_us(when)

    def next_after(self, t_us: int) -> int:
        return to_us(from_us(self.last_at_or_before(t_us)) + dt.timedelta(hours=1))


Rule = Monthly | Daily | Hourly
