"""Billing tables: each client's Stripe customer and auto-recharge settings, the payments taken
through Stripe, and the Stripe events received (the webhook's idempotency record).

Money is integer nano-USD (Stripe's cents x 10_000_000); time is µs since the epoch, UTC. The
ledger holds the money itself; these rows say where it came from and what Stripe was asked.
Changed only through Alembic migrations (0009).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, ForeignKey, Integer, Text
from sqlmodel import Field, SQLModel

PAYMENT_KINDS = ("checkout", "recharge")
PAYMENT_STATUSES = ("open", "succeeded", "failed", "requires_action", "canceled")


def _big(**kw) -> Column:
    return Column(BigInteger, nullable=False, **kw)


class ClientBilling(SQLModel, table=True):
    """One row per client that has touched billing. Auto-recharge: when available credit (balance
    minus holds) drops below `recharge_threshold`, charge the saved card `recharge_amount`, at
    most `recharge_monthly_cap` a calendar month (UTC) when set."""

    __tablename__ = "client_billing"
    __table_args__ = (
        CheckConstraint("recharge_threshold >= 0 AND recharge_amount >= 0", name="ck_client_billing_amounts"),
        CheckConstraint("recharge_monthly_cap IS NULL OR recharge_monthly_cap > 0", name="ck_client_billing_cap"),
        CheckConstraint("recharge_failures >= 0 AND recharge_seq >= 0", name="ck_client_billing_counters"),
    )

    client_id: str = Field(sa_column=Column(Text, ForeignKey("client.id"), primary_key=True))
    stripe_customer_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    # The card saved by a Checkout with setup_future_usage=off_session: what auto-recharge charges.
    payment_method_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    recharge_enabled: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="0"))
    recharge_threshold: int = Field(default=0, sa_column=_big(server_default="0"))
    recharge_amount: int = Field(default=0, sa_column=_big(server_default="0"))
    recharge_monthly_cap: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The next recharge's sequence number: its idempotency key is "recharge:{client}:{seq}".
    recharge_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # The payment id of the recharge Stripe is working on; never two at once for a client.
    recharge_in_flight: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    recharge_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # Why auto-recharge was turned off by us (3 failures in a row...); "" when on or off by the client.
    recharge_disabled_reason: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    updated_us: int = Field(sa_column=_big())


class Payment(SQLModel, table=True):
    """Money a client paid, or was asked to pay, through Stripe: a Checkout top-up or an
    off-session auto-recharge. Credit reaches the ledger only from Stripe's webhook."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint("kind IN ('checkout', 'recharge')", name="ck_payment_kind"),
        CheckConstraint("status IN ('open', 'succeeded', 'failed', 'requires_action', 'canceled')",
                        name="ck_payment_status"),
        CheckConstraint("amount > 0", name="ck_payment_amount_positive"),
        CheckConstraint("credited >= 0 AND refunded >= 0 AND disputed >= 0", name="ck_payment_sums"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))  # "pay_..." (ours)
    client_id: str = Field(sa_column=Column(Text, ForeignKey("client.id"), nullable=False, index=True))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    amount: int = Field(sa_column=_big())  # nano-USD asked for
    status: str = Field(sa_column=Column(Text, nullable=False))
    idempotency_key: str = Field(sa_column=Column(Text, nullable=False, unique=True))  # sent to Stripe
    checkout_session_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    payment_intent_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    charge_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    credited: int = Field(default=0, sa_column=_big(server_default="0"))  # reached the client's balance
    refunded: int = Field(default=0, sa_column=_big(server_default="0"))
    disputed: int = Field(default=0, sa_column=_big(server_default="0"))
    failure: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # Stripe's words
    created_us: int = Field(sa_column=_big(index=True))
    updated_us: int = Field(sa_column=_big())


class StripeEvent(SQLModel, table=True):
    """Every verified webhook event, once: a replay (same id) is answered without acting again."""

    __tablename__ = "stripe_event"

    id: str = Field(sa_column=Column(Text, primary_key=True))  # Stripe's "evt_..."
    type: str = Field(sa_column=Column(Text, nullable=False))
    created: int = Field(sa_column=_big())  # Stripe's own timestamp (seconds)
    received_us: int = Field(sa_column=_big(index=True))
    outcome: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # what it did
