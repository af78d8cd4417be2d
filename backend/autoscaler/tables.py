"""What the operator set about scaling one model (NULL: the [autoscaler] settings' defaults)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, Integer, Text
from sqlmodel import Field, SQLModel


class ModelScaling(SQLModel, table=True):
    __tablename__ = "model_scaling"
    __table_args__ = (
        CheckConstraint("min_replicas IS NULL OR min_replicas >= 0", name="ck_model_scaling_min"),
        CheckConstraint("max_replicas IS NULL OR max_replicas >= 1", name="ck_model_scaling_max"),
    )

    model: str = Field(sa_column=Column(Text, primary_key=True))
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False, server_default="1"))
    min_replicas: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    max_replicas: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))
