"""What the supervisor keeps across restarts: each calendar schedule's last run."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel


class ScheduleRun(SQLModel, table=True):
    """One row per calendar schedule (by name): when it last ran to completion and for which
    scheduled instant, so that a start after downtime can tell that one was missed and catch up."""

    __tablename__ = "schedule_run"

    name: str = Field(sa_column=Column(Text, primary_key=True))
    # The scheduled instant the run was for (UTC µs): a catch-up run covers the missed instant.
    scheduled_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    # When that run finished (UTC µs); None: none has run yet (the row marks where counting began).
    finished_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
