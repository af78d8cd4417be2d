"""A client's month as invoice lines, from what the ledger says happened (pure: no database).

The balance an invoice states is the client's prepaid balance less what it owes (its receivable
account): a refund or dispute its credit could not cover makes it negative. Each posted transfer
touching either account moves that balance by a signed amount; its `code` says what it was:

    payment, stripe_payment      -> payment     (+)
    grant                        -> grant       (+)
    stripe_refund                -> refund      (-)
    stripe_dispute               -> dispute     (-)
    receivable, receivable_settled -> adjustment (-)  (settled: prepaid -> receivable, nets to 0: no line)
    usage (post_pending)         -> usage lines (-), per model and price, from the usage events

A transfer of a known code that moves the balance the wrong way, or one of a code not listed, stops
the invoice (StatementError): a document that does not add up is never issued. The draft checks
closing = opening + payments + grants - usage - refunds - disputes - adjustments, and that the usage
lines (usage events) sum to what the ledger posted for usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.billing.invoices.cents import price

CLASS_OF_CODE = {
    "payment": "payment",
    "stripe_payment": "payment",
    "grant": "grant",
    "stripe_refund": "refund",
    "stripe_dispute": "dispute",
    "receivable": "adjustment",
    "receivable_settled": "adjustment",
}
# Which way each kind of line moves the balance: +1 adds to it, -1 takes from it.
DIRECTION = {"usage": -1, "payment": 1, "grant": 1, "refund": -1, "dispute": -1, "adjustment": -1}
DESCRIPTION = {
    "payment": "Payment received",
    "stripe_payment": "Card payment (Stripe)",
    "grant": "Credit granted",
    "stripe_refund": "Card payment refunded",
    "stripe_dispute": "Card payment disputed",
    "receivable": "Refund or dispute beyond the balance (owed)",
    "receivable_settled": "Amount owed, settled",
}


class StatementError(ValueError):
    """The ledger's record of a client's month cannot be stated as an invoice that adds up."""


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """A client's usage events of the month at one model and one price."""

    model: str
    price_prompt_per_mtok: int
    price_completion_per_mtok: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    charged: int
    first_us: int  # the first event at this price: lines follow the month's order


@dataclass(frozen=True, slots=True)
class Move:
    """A posted transfer of the month on the client's prepaid or receivable account, other than usage."""

    key: str
    code: str
    created_us: int
    delta: int  # signed: what it did to the balance (0: between the client's own two accounts)


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """The balance before the period, at its end, and what usage the ledger posted in it."""

    opening: int
    closing: int
    usage_charged: int


@dataclass(frozen=True, slots=True)
class DraftLine:
    kind: str
    description: str
    amount: int  # >= 0; DIRECTION[kind] says which way it moved the balance
    model: str | None = None
    price_prompt_per_mtok: int | None = None
    price_completion_per_mtok: int | None = None
    requests: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    occurred_us: int | None = None

    @property
    def signed(self) -> int:
        return DIRECTION[self.kind] * self.amount


@dataclass(frozen=True, slots=True)
class Draft:
    lines: tuple[DraftLine, ...]
    opening: int
    closing: int

    def total(self, *kinds: str) -> int:
        return sum(line.amount for line in self.lines if line.kind in kinds)

    @property
    def usage_total(self) -> int:
        return self.total("usage")

    @property
    def payments_total(self) -> int:
        return self.total("payment")

    @property
    def grants_total(self) -> int:
        return self.total("grant")

    @property
    def refunds_total(self) -> int:
        """Refunds and disputes: what the invoice table's refunds_total holds."""
        return self.total("refund", "dispute")

    @property
    def adjustments_total(self) -> int:
        return self.total("adjustment")


def usage_description(g: UsageGroup) -> str:
    return (f"{g.model} at {price(g.price_prompt_per_mtok)} / {price(g.price_completion_per_mtok)} "
            "per 1M tokens (prompt / completion)")


def draft(usage: list[UsageGroup], moves: list[Move], ledger: LedgerFigures) -> Draft:
    """The month's lines, in order (usage per model and price, then the rest as it happened), and
    the check that they take the opening balance to the closing one."""
    lines: list[DraftLine] = []
    for g in sorted(usage, key=lambda g: (g.model, g.first_us, g.price_prompt_per_mtok, g.price_completion_per_mtok)):
        lines.append(DraftLine("usage", usage_description(g), g.charged, model=g.model,
                               price_prompt_per_mtok=g.price_prompt_per_mtok,
                               price_completion_per_mtok=g.price_completion_per_mtok, requests=g.requests,
                               prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens))
    for m in sorted(moves, key=lambda m: (m.created_us, m.key)):
        if m.delta == 0:
            continue  # between the client's prepaid and receivable accounts: the balance stays
        kind = CLASS_OF_CODE.get(m.code)
        if kind is None:
            raise StatementError(f"transfer {m.key}: code {m.code!r} is not one an invoice knows "
                                 f"({', '.join(sorted(CLASS_OF_CODE))} or usage)")
        if (m.delta > 0) != (DIRECTION[kind] > 0):
            raise StatementError(f"transfer {m.key} ({m.code}) {'added to' if m.delta > 0 else 'took from'} "
                                 f"the balance; a {kind} never does")
        lines.append(DraftLine(kind, DESCRIPTION[m.code], abs(m.delta), occurred_us=m.created_us))
    d = Draft(tuple(lines), ledger.opening, ledger.closing)
    if d.usage_total != ledger.usage_charged:
        raise StatementError(f"the usage events sum to {d.usage_total} nano-USD but the ledger posted "
                             f"{ledger.usage_charged} nano-USD of usage")
    moved = ledger.opening + sum(line.signed for line in d.lines)
    if moved != ledger.closing:
        raise StatementError(f"opening {ledger.opening} + the lines ({moved - ledger.opening}) = {moved} nano-USD, "
                             f"but the ledger's closing balance is {ledger.closing}")
    return d
