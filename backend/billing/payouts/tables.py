"""Host payout tables: each host's payout settings (threshold, destination, retry state) and every
payout asked for. Money is integer nano-USD, time µs since the epoch, UTC. The ledger holds the
money itself (host payable -> payment clearing, code `host_payout`, key `payout:{id}`); these rows
say what was asked of whom. Changed only through Alembic migrations (0011).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, Text, text
from sqlmodel import Field, SQLModel

METHODS = ("none", "stripe", "manual")  # "none": no destination yet, so never paid
PAYOUT_STATES = ("pending", "paid", "failed", "canceled")


def _big(**kw) -> Column:
    return Column(BigInteger, nullable=False, **kw)


class HostPayoutSettings(SQLModel, table=True):
    """One row per host that has payout settings. `threshold` NULL: the [payouts] default."""

    __tablename__ = "host_payout_settings"
    __table_args__ = (
        CheckConstraint("method IN ('none', 'stripe', 'manual')", name="ck_host_payout_settings_method"),
        CheckConstraint("method != 'stripe' OR stripe_account IS NOT NULL", name="ck_host_payout_settings_account"),
        CheckConstraint("threshold IS NULL OR threshold > 0", name="ck_host_payout_settings_threshold"),
        CheckConstraint("failures >= 0", name="ck_host_payout_settings_failures"),
    )

    host_id: str = Field(sa_column=Column(Text, ForeignKey("host.id"), primary_key=True))
    threshold: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    method: str = Field(default="none", sa_column=Column(Text, nullable=False, server_default="none"))
    stripe_account: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # "acct_..."
    # Failed attempts in a row (a Stripe refusal or no answer); sets the wait before the next one.
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_us: int = Field(default=0, sa_column=_big(server_default="0"))  # the loop leaves it until then
    updated_us: int = Field(sa_column=_big())
    updated_by: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class HostPayout(SQLModel, table=True):
    """Money owed to a host, paid or being paid. Its id is the Stripe idempotency key and transfer
    group, and the ledger key is "payout:{id}": whichever step a crash interrupts, the next run
    finds what was done by these and finishes it once."""

    __tablename__ = "host_payout"
    __table_args__ = (
        CheckConstraint("method IN ('stripe', 'manual')", name="ck_host_payout_method"),
        CheckConstraint("state IN ('pending', 'paid', 'failed', 'canceled')", name="ck_host_payout_state"),
        CheckConstraint("amount > 0", name="ck_host_payout_amount_positive"),
        CheckConstraint("attempts >= 0", name="ck_host_payout_attempts"),
        # Never two payouts in flight for one host, whatever process claims them.
        Index("uq_host_payout_one_pending", "host_id", unique=True, sqlite_where=text("state = 'pending'"),
              postgresql_where=text("state = 'pending'")),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))  # "po_..." (ours)
    host_id: str = Field(sa_column=Column(Text, ForeignKey("host.id"), nullable=False, index=True))
    amount: int = Field(sa_column=_big())  # fixed when claimed: the host payable then, in whole cents
    method: str = Field(sa_column=Column(Text, nullable=False))
    destination: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # acct_... or ""
    state: str = Field(sa_column=Column(Text, nullable=False))
    stripe_transfer_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    reference: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # the operator's
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    failure: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # Stripe's words
    created_us: int = Field(sa_column=_big(index=True))
    updated_us: int = Field(sa_column=_big())
    paid_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    paid_by: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # "stripe", "operator"
