"""Prices over time, and what the operator fixed about a model's price."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel


class PriceChange(SQLModel, table=True):
    """One change of a model's price: the new price, who or what set it and why. The price in
    force at any instant is the latest change at or before it."""

    __tablename__ = "price_change"
    __table_args__ = (
        CheckConstraint("prompt_per_mtok >= 0 AND completion_per_mtok >= 0", name="ck_price_change_nonneg"),
        Index("ix_price_change_model_at", "model", "at_us"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True, autoincrement=True))
    model: str = Field(sa_column=Column(Text, nullable=False))
    at_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    prompt_per_mtok: int = Field(sa_column=Column(BigInteger, nullable=False))  # nano-USD per 1M tokens
    completion_per_mtok: int = Field(sa_column=Column(BigInteger, nullable=False))
    # "engine" (the dynamic pricing loop), "pin" / "unpin" (the operator), "list" (back to the list
    # price: dynamic pricing off), "start" (the first price this database saw for the model).
    source: str = Field(sa_column=Column(Text, nullable=False))
    explanation: str = Field(sa_column=Column(Text, nullable=False, server_default=""))
    # The factors' contributions as JSON (backend/wire/pricing.py PriceFactorOut list).
    factors: str = Field(sa_column=Column(Text, nullable=False, server_default="[]"))


class ModelPricing(SQLModel, table=True):
    """The operator's word on one model's price: a pin, and a floor and ceiling of its own (NULL:
    the catalogue's market range)."""

    __tablename__ = "model_pricing"

    model: str = Field(sa_column=Column(Text, primary_key=True))
    pinned: bool = Field(sa_column=Column(Boolean, nullable=False, server_default="0"))
    pin_prompt_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    pin_completion_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    floor_prompt_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    floor_completion_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ceiling_prompt_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ceiling_completion_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))
