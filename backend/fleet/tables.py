"""Hosts the operator enrolled, and per-model settings the operator changed."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, ForeignKey, Integer, Text
from sqlmodel import Field, SQLModel


class Host(SQLModel, table=True):
    __tablename__ = "host"
    __table_args__ = (
        CheckConstraint("payout_share_bps BETWEEN 0 AND 10000", name="ck_host_payout_share"),
        CheckConstraint("state IN ('active', 'draining', 'removed')", name="ck_host_state"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    # The host agent's bearer token, as SHA-256; the token itself is shown once at enrolment.
    token_sha256: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    provider: str = Field(sa_column=Column(Text, nullable=False, server_default="ssh"))
    # Share of each request's charge owed to the host (community hosts), in basis points.
    payout_share_bps: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    # What renting the machine costs the operator, nano-USD per hour (0 for community hosts).
    cost_per_hour: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    state: str = Field(sa_column=Column(Text, nullable=False, server_default="active"))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class ModelSetting(SQLModel, table=True):
    __tablename__ = "model_setting"

    model: str = Field(sa_column=Column(Text, primary_key=True))
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class HostUptime(SQLModel, table=True):
    """One stretch of time a host was up (registered and heard from). What the GPUs cost over any
    window is the overlap of these stretches with it at each stretch's hourly rate, so the cost
    of "today" survives a router restart. `ended_us` of an open stretch moves forward while the
    host stays up (at most a minute behind), so a crash loses at most that minute."""

    __tablename__ = "host_uptime"
    __table_args__ = (CheckConstraint("ended_us >= started_us", name="ck_host_uptime_order"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True, autoincrement=True))
    host_id: str = Field(sa_column=Column(Text, ForeignKey("host.id"), nullable=False, index=True))
    started_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    ended_us: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    # The host's rate while this stretch ran (nano-USD per hour): a later rate change does not
    # rewrite what the past cost.
    cost_per_hour: int = Field(sa_column=Column(BigInteger, nullable=False))
