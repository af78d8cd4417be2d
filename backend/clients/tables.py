"""Client and API key tables. A key is stored only as its SHA-256 and a short visible prefix."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, ForeignKey, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

CHANNELS = ("direct", "openrouter")


class Client(SQLModel, table=True):
    __tablename__ = "client"
    __table_args__ = (CheckConstraint("channel IN ('direct', 'openrouter')", name="ck_client_channel"),)

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    # How its requests reach us: "direct", or "openrouter" (OpenRouter calls with this client's key:
    # its requests owe OpenRouter's fee). Migration 0012.
    channel: str = Field(default="direct", sa_column=Column(Text, nullable=False, server_default="direct"))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    client_id: str = Field(sa_column=Column(Text, ForeignKey("client.id"), nullable=False, index=True))
    name: str = Field(sa_column=Column(Text, nullable=False, server_default=""))
    # What the operator sees of the key ("tm-AbC123..."): enough to recognise, not to use.
    prefix: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class LicenceAcceptance(SQLModel, table=True):
    """A client's acknowledgement of one version of a model's licence (never changed or removed:
    a new licence version is a new row)."""

    __tablename__ = "licence_acceptance"
    __table_args__ = (UniqueConstraint("client_id", "model", "version", name="uq_licence_acceptance"),)

    id: str = Field(sa_column=Column(Text, primary_key=True))
    client_id: str = Field(sa_column=Column(Text, ForeignKey("client.id"), nullable=False, index=True))
    model: str = Field(sa_column=Column(Text, nullable=False))
    licence: str = Field(sa_column=Column(Text, nullable=False))  # its name, as the catalogue gave it then
    version: str = Field(sa_column=Column(Text, nullable=False))
    accepted_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    # "client" (its own key, named in key_id) or "operator" (the admin API or console).
    accepted_by: str = Field(sa_column=Column(Text, nullable=False))
    key_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class LicencePolicy(SQLModel, table=True):
    """The operator's word on whether a model's licence needs a client's acknowledgement,
    overriding the catalogue's default (absent: the catalogue decides)."""

    __tablename__ = "licence_policy"

    model: str = Field(sa_column=Column(Text, primary_key=True))
    requires_acceptance: bool = Field(sa_column=Column(Boolean, nullable=False))
    set_by: str = Field(sa_column=Column(Text, nullable=False))
    set_us: int = Field(sa_column=Column(BigInteger, nullable=False))
