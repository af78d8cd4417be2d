"""The payout rows: each host's settings and its payouts. A claim is an INSERT that the partial
unique index (one pending payout per host) lets through only once, so two loops, two router
processes or the loop and the operator's `payouts run` never start two payouts for one host."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.payouts.tables import HostPayout, HostPayoutSettings
from backend.runtime.clock import Clock

_S = HostPayoutSettings.__table__
_P = HostPayout.__table__
MAX_LIST = 500


@dataclass(frozen=True, slots=True)
class SettingsRow:
    host_id: str
    threshold: int | None  # None: the [payouts] default
    method: str  # "none", "stripe", "manual"
    stripe_account: str | None
    failures: int
    next_attempt_us: int
    updated_us: int
    updated_by: str


@dataclass(frozen=True, slots=True)
class PayoutRow:
    id: str
    host_id: str
    amount: int
    method: str
    destination: str
    state: str
    stripe_transfer_id: str | None
    reference: str
    attempts: int
    failure: str
    created_us: int
    updated_us: int
    paid_us: int | None
    paid_by: str


def _settings(r) -> SettingsRow:
    return SettingsRow(**{f: r[f] for f in SettingsRow.__slots__})


def _payout(r) -> PayoutRow:
    return PayoutRow(**{f: r[f] for f in PayoutRow.__slots__})


class PayoutRecords:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    # ---------------------------------------------------------------- settings
    async def settings(self, host_id: str) -> SettingsRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(_S).where(_S.c.host_id == host_id))).mappings().first()
        return _settings(r) if r else None

    async def all_settings(self) -> list[SettingsRow]:
        async with self.engine.connect() as conn:
            return [_settings(r) for r in (await conn.execute(select(_S))).mappings()]

    async def save_settings(self, host_id: str, *, by: str, **values) -> SettingsRow:
        """Insert or change a host's settings; a change of destination starts the retry count afresh."""
        values = {**values, "updated_us": self.clock.now_us(), "updated_by": by}
        for attempt in range(2):  # a concurrent first save inserts between our update and insert: update again
            try:
                async with self.engine.begin() as conn:
                    r = await conn.execute(update(_S).where(_S.c.host_id == host_id).values(**values))
                    if r.rowcount == 0:
                        await conn.execute(insert(_S).values(host_id=host_id, **values))
                break
            except IntegrityError:
                if attempt:
                    raise
        row = await self.settings(host_id)
        assert row is not None
        return row

    async def set_retry(self, host_id: str, failures: int, next_attempt_us: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(_S).where(_S.c.host_id == host_id)
                               .values(failures=failures, next_attempt_us=next_attempt_us))

    # ---------------------------------------------------------------- payouts
    async def claim(self, payout_id: str, host_id: str, amount: int, method: str, destination: str) -> bool:
        """Record a pending payout; False when the host already has one (the database decides)."""
        now = self.clock.now_us()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(_P).values(id=payout_id, host_id=host_id, amount=amount, method=method,
                                                     destination=destination, state="pending", created_us=now,
                                                     updated_us=now))
        except IntegrityError:
            return False
        return True

    async def update(self, payout_id: str, only_from: tuple[str, ...] = ("pending",), **values) -> bool:
        """Change a payout only while in one of `only_from`: True if this call changed it."""
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_P).where(_P.c.id == payout_id, _P.c.state.in_(only_from))
                                   .values(updated_us=self.clock.now_us(), **values))
        return r.rowcount == 1

    async def claim_reference(self, payout_id: str, reference: str) -> bool:
        """Take a pending manual payout for the operator's `reference` before it is posted: True if it
        is now this reference's (or already was: the same reference told again). Two references at
        once, or a cancel at the same moment, cannot both have it (the database decides)."""
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_P).where(_P.c.id == payout_id, _P.c.state == "pending",
                                                    _P.c.method == "manual", _P.c.reference.in_(("", reference)))
                                   .values(reference=reference, updated_us=self.clock.now_us()))
        return r.rowcount == 1

    async def release_reference(self, payout_id: str, reference: str) -> None:
        """Give back a payout taken for `reference` whose posting was refused (nothing was posted)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(_P).where(_P.c.id == payout_id, _P.c.state == "pending",
                                                _P.c.reference == reference)
                               .values(reference="", updated_us=self.clock.now_us()))

    async def cancel_manual(self, payout_id: str, failure: str) -> bool:
        """Cancel a pending manual payout nobody is recording as paid: True if this call did."""
        async with self.engine.begin() as conn:
            r = await conn.execute(update(_P).where(_P.c.id == payout_id, _P.c.state == "pending",
                                                    _P.c.method == "manual", _P.c.reference == "")
                                   .values(state="canceled", failure=failure, updated_us=self.clock.now_us()))
        return r.rowcount == 1

    async def attempted(self, payout_id: str, failure: str = "") -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(_P).where(_P.c.id == payout_id)
                               .values(attempts=_P.c.attempts + 1, failure=failure, updated_us=self.clock.now_us()))

    async def payout(self, payout_id: str) -> PayoutRow | None:
        rows = await self._where(_P.c.id == payout_id, limit=1)
        return rows[0] if rows else None

    async def pending(self, host_id: str | None = None) -> list[PayoutRow]:
        cond = [_P.c.state == "pending"] + ([_P.c.host_id == host_id] if host_id else [])
        return await self._where(*cond, limit=None, oldest_first=True)

    async def last_paid(self, host_id: str) -> PayoutRow | None:
        rows = await self._where(_P.c.host_id == host_id, _P.c.state == "paid", limit=1)
        return rows[0] if rows else None

    async def payouts(self, *, host_id: str | None = None, state: str | None = None,
                      limit: int = 100) -> list[PayoutRow]:
        cond = ([_P.c.host_id == host_id] if host_id else []) + ([_P.c.state == state] if state else [])
        return await self._where(*cond, limit=min(limit, MAX_LIST))

    async def _where(self, *cond, limit: int | None, oldest_first: bool = False) -> list[PayoutRow]:
        order = (_P.c.created_us, _P.c.id) if oldest_first else (_P.c.created_us.desc(), _P.c.id.desc())
        q = select(_P).where(*cond).order_by(*order)
        if limit is not None:
            q = q.limit(limit)
        async with self.engine.connect() as conn:
            return [_payout(r) for r in (await conn.execute(q)).mappings()]
