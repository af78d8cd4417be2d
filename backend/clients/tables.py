"""Client and API key tables. A key is stored only as its SHA-256 and a short visible prefix."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Text
from sqlmodel import Field, SQLModel


class Client(SQLModel, table=True):
    __tablename__ = "client"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))


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
