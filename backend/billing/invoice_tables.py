"""Invoice tables: one invoice per client per calendar month (UTC), numbered from one gapless
sequence, immutable once issued (migration 0009 makes the database refuse UPDATE and DELETE on
`invoice` and `invoice_line`; 0013 refuses an `invoice_line` beyond the invoice's `line_count`).
Money is integer nano-USD summed exactly; rounding to cents happens only where it is shown.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

LINE_KINDS = ("usage", "payment", "grant", "refund", "dispute", "adjustment")


def _big(**kw) -> Column:
    return Column(BigInteger, nullable=False, **kw)


class InvoiceCounter(SQLModel, table=True):
    """The sequence's last number, taken in the transaction that inserts the invoice: a failed
    generation rolls it back too, so numbers have no gaps."""

    __tablename__ = "invoice_counter"

    name: str = Field(sa_column=Column(Text, primary_key=True))  # "invoice"
    last: int = Field(sa_column=_big())


class Invoice(SQLModel, table=True):
    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("client_id", "period", name="uq_invoice_client_period"),
        CheckConstraint("line_count >= 0", name="ck_invoice_line_count"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True))
    seq: int = Field(sa_column=_big(unique=True))  # the gapless sequence number
    number: str = Field(sa_column=Column(Text, nullable=False, unique=True))  # "TM-2026-000123"
    client_id: str = Field(sa_column=Column(Text, ForeignKey("client.id"), nullable=False, index=True))
    client_name: str = Field(sa_column=Column(Text, nullable=False))  # as it was when issued
    period: str = Field(sa_column=Column(Text, nullable=False))  # "2026-11"
    period_start_us: int = Field(sa_column=_big())
    period_end_us: int = Field(sa_column=_big())  # exclusive
    issued_us: int = Field(sa_column=_big())
    currency: str = Field(default="usd", sa_column=Column(Text, nullable=False, server_default="usd"))
    # The client's prepaid balance at the period's start and end (a receivable counts against it).
    opening_balance: int = Field(sa_column=_big())
    closing_balance: int = Field(sa_column=_big())
    usage_total: int = Field(sa_column=_big())  # charged for requests
    payments_total: int = Field(sa_column=_big())  # paid in through Stripe
    grants_total: int = Field(sa_column=_big())  # granted by the operator
    refunds_total: int = Field(sa_column=_big())  # refunds and disputes taken back
    business_name: str = Field(sa_column=Column(Text, nullable=False))  # the seller, from the settings
    business_address: str = Field(sa_column=Column(Text, nullable=False))
    # How many lines it was issued with, set in the transaction that inserts them: the database
    # refuses a line beyond it (migration 0013), so an issued invoice cannot gain lines.
    line_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"
    __table_args__ = (
        CheckConstraint("kind IN ('usage', 'payment', 'grant', 'refund', 'dispute', 'adjustment')",
                        name="ck_invoice_line_kind"),
        CheckConstraint("amount >= 0", name="ck_invoice_line_amount"),
        UniqueConstraint("invoice_id", "position", name="uq_invoice_line_position"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True))
    invoice_id: int = Field(sa_column=Column(BigInteger, ForeignKey("invoice.id"), nullable=False, index=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))  # usage charges; the rest moves the balance
    description: str = Field(sa_column=Column(Text, nullable=False))
    model: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # A usage line is one model at one price: the month's requests at that price.
    price_prompt_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    price_completion_per_mtok: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    requests: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    prompt_tokens: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    completion_tokens: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    occurred_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # a payment's time
    amount: int = Field(sa_column=_big())  # nano-USD, >= 0; the kind says which way it moved the balance
