"""Ledger tables. Changed only through Alembic migrations (backend/db/migrations).

The model is TigerBeetle's: an account carries four cached sums (debits/credits, posted/
pending); a transfer debits one account and credits another by the same positive amount, so
debits equal credits by construction. Transfers are immutable (the database refuses UPDATE and
DELETE); a hold is a `pending` transfer, resolved exactly once by a later transfer that names it
in `pending_key` (UNIQUE): `post_pending` (possibly for less: the rest is released),
`void_pending` or `expire_pending`.

Time columns are integer microseconds since the Unix epoch, UTC (`*_us`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel

TRANSFER_KINDS = ("posted", "pending", "post_pending", "void_pending", "expire_pending")
USAGE_STATUSES = ("ok", "failed", "cancelled")


# BIGINT on PostgreSQL; on SQLite an INTEGER PRIMARY KEY is the rowid itself.
_ID = BigInteger().with_variant(Integer, "sqlite")


def _big(**kw) -> Column:
    return Column(BigInteger, nullable=False, **kw)


def _account_ref() -> Column:
    return Column(BigInteger, ForeignKey("ledger_account.id"), nullable=False, index=True)


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_account"
    __table_args__ = (
        CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name="ck_account_sums_non_negative",
        ),
        # A prepaid client balance (credit-normal) never goes below zero, holds included.
        CheckConstraint(
            "NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted",
            name="ck_account_debit_cap",
        ),
        CheckConstraint(
            "NOT credits_must_not_exceed_debits OR credits_posted + credits_pending <= debits_posted",
            name="ck_account_credit_cap",
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True))
    code: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    kind: str = Field(sa_column=Column(Text, nullable=False, index=True))
    owner: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    debits_posted: int = Field(default=0, sa_column=_big(server_default="0"))
    credits_posted: int = Field(default=0, sa_column=_big(server_default="0"))
    debits_pending: int = Field(default=0, sa_column=_big(server_default="0"))
    credits_pending: int = Field(default=0, sa_column=_big(server_default="0"))
    debits_must_not_exceed_credits: bool = Field(default=False, nullable=False)
    credits_must_not_exceed_debits: bool = Field(default=False, nullable=False)
    created_us: int = Field(sa_column=_big())


class LedgerTransfer(SQLModel, table=True):
    __tablename__ = "ledger_transfer"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_transfer_amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfer_two_accounts"),
        CheckConstraint(
            "kind IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')",
            name="ck_transfer_kind",
        ),
        CheckConstraint(
            "(kind IN ('posted', 'pending')) = (pending_key IS NULL)",
            name="ck_transfer_resolution_names_hold",
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True))
    key: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    debit_account_id: int = Field(sa_column=_account_ref())
    credit_account_id: int = Field(sa_column=_account_ref())
    amount: int = Field(sa_column=_big())
    # A hold is resolved exactly once: the UNIQUE constraint is the database's guarantee.
    pending_key: str | None = Field(
        default=None, sa_column=Column(Text, ForeignKey("ledger_transfer.key"), nullable=True, unique=True)
    )
    code: str = Field(sa_column=Column(Text, nullable=False))
    ref: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    expires_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_us: int = Field(sa_column=_big())


class LedgerOpenHold(SQLModel, table=True):
    """Holds not yet resolved: a small, mutable index so start-up never scans history."""

    __tablename__ = "ledger_open_hold"

    key: str = Field(sa_column=Column(Text, ForeignKey("ledger_transfer.key"), primary_key=True))
    expires_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class UsageEvent(SQLModel, table=True):
    """One row per client request, written in the same transaction as its transfers."""

    __tablename__ = "usage_event"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'failed', 'cancelled')", name="ck_usage_status"),
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND charged >= 0 AND host_share >= 0",
            name="ck_usage_non_negative",
        ),
        CheckConstraint("host_share <= charged", name="ck_usage_host_share_within_charge"),
        CheckConstraint("requests >= 1", name="ck_usage_requests_positive"),
        CheckConstraint("fee >= 0 AND fee <= charged", name="ck_usage_fee_within_charge"),
        # One time index only: every extra index costs each request several µs at commit.
        # Per client / model / host figures come from rollups, not from scanning events.
        Index("ix_usage_time", "created_us"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True))
    request_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    hold_key: str = Field(sa_column=Column(Text, nullable=False))
    client_id: str = Field(sa_column=Column(Text, nullable=False))
    key_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    model: str = Field(sa_column=Column(Text, nullable=False))
    host_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    prompt_tokens: int = Field(nullable=False)
    completion_tokens: int = Field(nullable=False)
    # The price snapshot quoted when the request started, nano-USD per million tokens.
    price_prompt_per_mtok: int = Field(sa_column=_big())
    price_completion_per_mtok: int = Field(sa_column=_big())
    charged: int = Field(sa_column=_big())
    host_share: int = Field(sa_column=_big())
    status: str = Field(sa_column=Column(Text, nullable=False))
    started_us: int = Field(sa_column=_big())
    first_byte_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    finished_us: int = Field(sa_column=_big())
    created_us: int = Field(sa_column=_big())
    # How many requests the row stands for: 1 from the router; a simulation settles a replica's
    # requests of an hour at one price as one row (migration 0008). Reports sum it.
    requests: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    # What the channel the request came through keeps of its charge (OpenRouter's fee; 0 for a
    # client of ours directly), posted fees -> the channel's payable in the same transaction (0012).
    fee: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


# Tables whose rows the database itself refuses to change or delete (migration 0001 adds the
# triggers); tests check that the refusal holds.
IMMUTABLE_TABLES = ("ledger_transfer", "usage_event")
