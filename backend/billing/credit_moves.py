"""Stripe money in the ledger. Each move is one ledger transfer, idempotent on a key derived from
Stripe's ids, so a webhook delivered twice, or two events about the same payment, move it once.

Transfer codes (the invoices classify the client's transfers by them):
- `stripe_payment`     payment clearing -> client prepaid: a payment Stripe took;
- `stripe_refund`      client prepaid -> payment clearing: a refund, as far as available credit covers it;
- `stripe_dispute`     client prepaid -> payment clearing: a dispute, likewise;
- `receivable`         the client's receivable -> payment clearing: what available credit could not cover
                       (the client now owes it; its balance stays at zero and it is stopped there);
- `receivable_settled` client prepaid -> the client's receivable: a later payment first pays what is owed.

A move made of two transfers (a refund split between credit and receivable) reads back what an
earlier attempt committed, so a retry after a crash finishes it with the same figures.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from backend.ledger import chart
from backend.ledger.errors import IdempotencyConflict, InsufficientFunds, UnknownAccount
from backend.ledger.service import Ledger
from backend.ledger.tables import LedgerTransfer

log = logging.getLogger(__name__)

_T = LedgerTransfer.__table__
_TRIES = 5  # holds taken between reading available credit and the transfer's own check: read again


def credit_key(payment_id: str) -> str:
    return f"stripe:{payment_id}:credit"


class CreditMoves:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def _stored(self, key: str) -> int | None:
        async with self.ledger.engine.connect() as conn:
            return (await conn.execute(select(_T.c.amount).where(_T.c.key == key))).scalar()

    async def credit(self, client_id: str, payment_id: str, amount: int) -> bool:
        """Credit a payment Stripe took, then let it pay what the client owes. True if this call
        credited it (False: it was credited before)."""
        result = await self.ledger.transfer(credit_key(payment_id), chart.PAYMENT_CLEARING,
                                            chart.client_account(client_id), amount, code="stripe_payment",
                                            ref=payment_id)
        await self.settle_owed(client_id, payment_id)
        return not result.replayed

    async def settle_owed(self, client_id: str, payment_id: str) -> int:
        """Pay what the client owes (its receivable) from its available credit, once per payment."""
        try:
            owed_acc = self.ledger.account(chart.receivable_account(client_id))
        except UnknownAccount:
            return 0
        key = f"stripe:{payment_id}:receivable_settled"
        done = await self._stored(key)
        if done is not None:
            return done
        client = chart.client_account(client_id)
        for _ in range(_TRIES):
            take = min(owed_acc.balance, self.ledger.account(client).available)
            if take <= 0:
                return 0
            try:
                r = await self.ledger.transfer(key, client, owed_acc.code, take, code="receivable_settled",
                                               ref=payment_id)
                return r.amount
            except InsufficientFunds:
                continue
            except IdempotencyConflict:  # a concurrent delivery settled it with its own figure
                return await self._stored(key) or 0
        return 0

    async def reversed_before(self, payment_id: str, *, but: tuple[str, ...] = ()) -> int:
        """What refunds and disputes took back of a payment so far (from credit and as owed), keys
        in `but` left out."""
        codes = ("stripe_refund", "stripe_dispute", "receivable")
        q = select(func.coalesce(func.sum(_T.c.amount), 0)).where(_T.c.ref == payment_id, _T.c.code.in_(codes))
        if but:
            q = q.where(_T.c.key.not_in(but))
        async with self.ledger.engine.connect() as conn:
            return int((await conn.execute(q)).scalar() or 0)

    async def reverse(self, client_id: str, payment_id: str, key: str, amount: int, code: str, *,
                      credited: int) -> tuple[int, int]:
        """Take `amount` back from the client (a refund or dispute, `code`): from its available
        credit as far as it goes, the rest recorded as owed. Returns (from credit, owed).

        Never more than the payment `credited` less what was taken back of it before: a charge
        refunded and then disputed too (Stripe may debit us for both) takes the money back from the
        client once; the rest is the operator's loss, not the client's debt."""
        client = chart.client_account(client_id)
        owed_key = f"{key}:receivable"
        taken = await self._stored(key)
        if taken is None and await self._stored(owed_key) is not None:
            taken = 0  # an earlier attempt found no credit to take and recorded it all as owed
        # What is left of the payment besides this move: the same figure when a retry finishes it.
        amount = min(amount, max(credited - await self.reversed_before(payment_id, but=(key, owed_key)), 0))
        if taken is None:
            taken = 0
            for _ in range(_TRIES):
                take = min(amount, max(self.ledger.account(client).available, 0))
                if take <= 0:
                    break
                try:
                    taken = (await self.ledger.transfer(key, client, chart.PAYMENT_CLEARING, take, code=code,
                                                        ref=payment_id)).amount
                    break
                except InsufficientFunds:
                    continue
                except IdempotencyConflict:
                    taken = await self._stored(key) or 0
                    break
        owed = amount - taken
        if owed > 0:
            receivable = chart.receivable_account(client_id)
            await self.ledger.open_account(receivable, chart.Kind.RECEIVABLE, owner=client_id)
            await self.ledger.transfer(owed_key, receivable, chart.PAYMENT_CLEARING, owed, code="receivable",
                                       ref=payment_id)
        return taken, owed
