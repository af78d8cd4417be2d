"""The date range of GET /v1/usage from its query parameters: ISO 8601 dates or timestamps, UTC.

- A date (YYYY-MM-DD) is that day's midnight, UTC. A timestamp needs its offset (`Z`, `+02:00`):
  one without is refused rather than guessed.
- `start_date` is inclusive and `end_date` exclusive, except that a bare `end_date` date includes
  that whole day (`start_date=2026-11-01&end_date=2026-11-30` is November).
- Defaults: neither given, the current UTC month; only `start_date`, up to now (the end of the
  current UTC month); only `end_date`, from the first of the UTC month its last instant falls in.
- At most 366 days; the end after the start; both between 1970 and 2100.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from backend.wire.errors import ApiError

MAX_DAYS = 366
_DAY = dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LAST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(?P<offset>Z|z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True, slots=True)
class UsageRange:
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive

    @property
    def start_us(self) -> int:
        return _us(self.start)

    @property
    def end_us(self) -> int:
        return _us(self.end)


def _us(when: dt.datetime) -> int:
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def _refuse(param: str, why: str) -> ApiError:
    return ApiError(400, f"{param}: {why}", code="invalid_value", param=param)


def _parse(text: str, param: str, *, end: bool) -> dt.datetime:
    s = text.strip()
    if _DATE.fullmatch(s):
        try:
            day = dt.date.fromisoformat(s)
        except ValueError as exc:
            raise _refuse(param, f"{text!r} is not a date: {exc}") from None
        when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return when + _DAY if end else when  # a bare end date includes its day
    m = _STAMP.fullmatch(s)
    if m is None:
        raise _refuse(param, f"{text!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 timestamp with an offset "
                             f"(2026-11-01T00:00:00Z)")
    if m.group("offset") is None:
        raise _refuse(param, f"{text!r} has no offset: add one (Z for UTC, or +02:00...)")
    try:
        when = dt.datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError as exc:
        raise _refuse(param, f"{text!r} is not a valid timestamp: {exc}") from None
    return when.astimezone(dt.UTC)


def _month_start(when: dt.datetime) -> dt.datetime:
    return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(when: dt.datetime) -> dt.datetime:
    first = _month_start(when)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def usage_range(start_date: str | None, end_date: str | None, now: dt.datetime) -> UsageRange:
    """The range the parameters name (see the module's docstring); ApiError 400 naming the parameter."""
    start = _parse(start_date, "start_date", end=False) if start_date is not None else None
    end = _parse(end_date, "end_date", end=True) if end_date is not None else None
    for when, param in ((start, "start_date"), (end, "end_date")):
        if when is not None and not _EPOCH <= when <= _LAST:
            raise _refuse(param, "must be between 1970-01-01 and 2100-01-01")
    # A range refused is blamed on what the client gave: end_date, or start_date when it gave only that.
    param = "end_date" if end is not None or start is None else "start_date"
    if end is None:
        end = _next_month(now)
    if start is None:
        start = _month_start(end - dt.timedelta(microseconds=1))
    if end <= start:
        raise _refuse(param, f"the end ({end.isoformat()}) must be after the start ({start.isoformat()}); a "
                             f"bare date as end_date includes that day")
    if end - start > dt.timedelta(days=MAX_DAYS):
        raise _refuse(param, f"the range from {start.isoformat()} to {end.isoformat()} is over {MAX_DAYS} days; "
                             f"ask for at most {MAX_DAYS} days at a time")
    return UsageRange(start, end)
