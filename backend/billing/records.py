"""Billing's rows: each client's ClientBilling (Stripe customer, saved card, auto-recharge), the
Payments asked of Stripe, and the StripeEvents received. Every change that races another (two
webhooks, a webhook and the recharge task, two router processes) is a conditional UPDATE whose row
count says who won, so the database decides, not the order in which coroutines ran."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.tables import ClientBilling, Payment, StripeEvent
from backend.runtime.clock import Clock, from_us, to_us

_CB = ClientBilling.__table__
_P = Payment.__table__
_E = StripeEvent.__table__


@dataclass(frozen=True, slots=True)
class BillingRow:
    client_id: str
    stripe_customer_id: str | None
    payment_method_id: str | None
    recharge_enabled: bool
    recharge_threshold: int
    recharge_amount: int
    recharge_monthly_cap: int | None
    recharge_seq: int
    recharge_in_flight: str | None
    recharge_failures: int
    recharge_disabled_reason: str


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: str
    client_id: str
    kind: str
    amount: int
    status: str
    idempotency_key: str
    checkout_session_id: str | None
    payment_intent_id: str | None
    charge_id: str | None
    credited: int
    refunded: int
    disputed: int
    failure: str
    created_us: int


def _billing(r) -> BillingRow:
    return BillingRow(**{f: r[f] for f in BillingRow.__slots__})


def _payment(r) -> PaymentRow:
    return PaymentRow(**{f: r[f] for f in PaymentRow.__slots__})


def month_start_us(now_us: int) -> int:
    """The first instant of the UTC calendar month holding `now_us`."""
    return to_us(from_us(now_us).replace(day=1, hour=0, minute=0, second=0, microsecond=0))


class BillingRecords:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    # ---------------------------------------------------------------- client_billing
    async def billing(self, client_id: str) -> BillingRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(_CB).where(_CB.c.client_id == client_id))).mappings().first()
        return _billing(r) if r else None

    async def ensure_billing(self, client_id: str) -> BillingRow:
        row = await self.billing(client_id)
        if row is not None:
            return row
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(_CB).values(client_id=client_id, updated_us=self.clock.now_us()))
        except IntegrityError:  # another request made it first
            pass
        row = await self.billing(client_id)
        assert row is not None
        return row

    async def enabled_billing(self) -> list[BillingRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_CB).where(_CB.c.recharge_enabled.is_(True)))).mappings().all()
        return [_billing(r) for r in rows]

    async def in_flight(self) -> list[BillingRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_CB).where(_CB.c.recharge_in_flight.is_not(None)))).mappings().all()
        return [_billing(r) for r in rows]

    async def update_billing(self, client_id: str, *conditions, **values) -> bool:
        """Change the client's row where `conditions` hold; True if it did."""
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_CB).where(_CB.c.client_id == client_id, *conditions)
                                   .values(updated_us=self.clock.now_us(), **values))
        return r.rowcount == 1

    @property
    def cb(self):
        """The client_billing table's columns, for `update_billing` conditions."""
        return _CB.c

    # ---------------------------------------------------------------- payment
    async def insert_payment(self, *, payment_id: str, client_id: str, kind: str, amount: int,
                             idempotency_key: str) -> None:
        now = self.clock.now_us()
        async with self.engine.begin() as conn:
            await conn.execute(insert(_P).values(id=payment_id, client_id=client_id, kind=kind, amount=amount,
                                                 status="open", idempotency_key=idempotency_key,
                                                 created_us=now, updated_us=now))

    async def claim_recharge(self, client_id: str, seq: int, payment_id: str, amount: int) -> bool:
        """Take the client's next recharge sequence number and mark it in flight, with its Payment
        row, in one transaction: False if another task or process took it first."""
        now = self.clock.now_us()
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_CB).where(
                _CB.c.client_id == client_id, _CB.c.recharge_in_flight.is_(None), _CB.c.recharge_seq == seq,
                _CB.c.recharge_enabled.is_(True)).values(recharge_in_flight=payment_id, recharge_seq=seq + 1,
                                                          updated_us=now))
            if r.rowcount != 1:
                return False
            await conn.execute(insert(_P).values(id=payment_id, client_id=client_id, kind="recharge", amount=amount,
                                                 status="open", idempotency_key=f"recharge:{client_id}:{seq}",
                                                 created_us=now, updated_us=now))
        return True

    async def payment(self, payment_id: str) -> PaymentRow | None:
        return await self._payment_where(_P.c.id == payment_id)

    async def payment_by_intent(self, pi_id: str) -> PaymentRow | None:
        return await self._payment_where(_P.c.payment_intent_id == pi_id)

    async def payment_by_session(self, session_id: str) -> PaymentRow | None:
        return await self._payment_where(_P.c.checkout_session_id == session_id)

    async def payment_by_charge(self, charge_id: str) -> PaymentRow | None:
        return await self._payment_where(_P.c.charge_id == charge_id)

    async def _payment_where(self, cond) -> PaymentRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(_P).where(cond))).mappings().first()
        return _payment(r) if r else None

    async def update_payment(self, payment_id: str, *, only_from: tuple[str, ...] | None = None, **values) -> bool:
        """Change a payment; with `only_from`, only while its status is one of those (True if it did)."""
        cond = [_P.c.id == payment_id]
        if only_from is not None:
            cond.append(_P.c.status.in_(only_from))
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_P).where(*cond).values(updated_us=self.clock.now_us(), **values))
        return r.rowcount == 1

    async def fill_payment(self, payment_id: str, **values: str | None) -> None:
        """Set Stripe's ids on a payment where they are still empty (never overwrite one)."""
        for column, value in values.items():
            if value:
                col = _P.c[column]
                async with self.engine.begin() as conn:
                    await conn.execute(update(_P).where(_P.c.id == payment_id, col.is_(None))
                                       .values({column: value, "updated_us": self.clock.now_us()}))

    async def recharged_since(self, client_id: str, since_us: int) -> int:
        """What auto-recharge took or is taking from the client's card since `since_us`."""
        q = select(func.coalesce(func.sum(_P.c.amount), 0)).where(
            _P.c.client_id == client_id, _P.c.kind == "recharge", _P.c.created_us >= since_us,
            _P.c.status.in_(("open", "succeeded")))
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    # ---------------------------------------------------------------- stripe_event
    async def event_seen(self, event_id: str) -> str | None:
        """The outcome recorded for a webhook event, or None if it was never handled."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(_E.c.outcome).where(_E.c.id == event_id))).scalar()

    async def record_event(self, event_id: str, kind: str, created: int, outcome: str) -> bool:
        """False if the event was recorded already (a concurrent delivery of it)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(_E).values(id=event_id, type=kind, created=created,
                                                     received_us=self.clock.now_us(), outcome=outcome[:500]))
        except IntegrityError:
            return False
        return True
