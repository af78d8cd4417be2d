"""The ledger's public face: accounts, transfers, two-phase holds and settlements.

Every operation is checked and applied to the in-memory state synchronously (so two requests
can never both spend the same credit), then handed to the group-commit writer; the caller
awaits its durability. If a commit fails, its operations and everything queued behind them
are failed and the in-memory state is reloaded from the database, the source of truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import make_sync_engine
from backend.ledger import chart
from backend.ledger.errors import (
    AccountExists,
    BalanceLimit,
    HoldExceeded,
    HoldNotFound,
    HoldResolved,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidKey,
    InvalidRequest,
    LedgerUnavailable,
    UnknownAccount,
)
from backend.ledger.state import Account, Hold, Op
from backend.ledger.tables import LedgerAccount, LedgerOpenHold, LedgerTransfer
from backend.ledger.writer import GroupCommitWriter
from backend.money import MAX_BALANCE_NANO, MAX_RUNNING_SUM_NANO, MoneyError, format_usd, require_nano
from backend.runtime.clock import REAL_CLOCK, Clock
from backend.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

_T = LedgerTransfer.__table__
_A = LedgerAccount.__table__
_O = LedgerOpenHold.__table__
_RESOLUTION_NAMES = {"post_pending": "posted", "void_pending": "voided", "expire_pending": "expired"}


@dataclass(frozen=True, slots=True)
class TransferResult:
    key: str
    debit: str
    credit: str
    amount: int
    code: str
    ref: str | None
    kind: str = "posted"
    replayed: bool = False

    def fingerprint(self) -> tuple:
        return (self.kind, self.debit, self.credit, self.amount, self.code, self.ref)


_FINGERPRINT_FIELDS = ("kind", "debit account", "credit account", "amount", "code", "reference")


def _differences(stored: tuple, given: tuple) -> list[str]:
    """What differs between two fingerprints, in words, for an IdempotencyConflict."""
    out = []
    for name, before, now in zip(_FINGERPRINT_FIELDS, stored, given, strict=True):
        if before == now:
            continue
        if name == "amount":
            out.append(f"amount: {format_usd(before)} before, {format_usd(now)} now")
        else:
            out.append(f"{name}: {before!r} before, {now!r} now")
    return out


@dataclass(frozen=True, slots=True)
class Usage:
    """The metered facts of one client request, stored with its settlement."""

    request_id: str
    client_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    price_prompt_per_mtok: int
    price_completion_per_mtok: int
    started_us: int
    finished_us: int
    key_id: str | None = None
    host_id: str | None = None
    first_byte_us: int | None = None
    status: str = "ok"
    # How many requests these figures sum: 1 from the router; more from a simulation that settles
    # a replica's requests of an hour at one price together (the tokens and charge are their sums).
    requests: int = 1


@dataclass(frozen=True, slots=True)
class Settlement:
    hold_key: str
    charged: int
    released: int
    host_share: int


def _amount(value: object, what: str) -> int:
    try:
        return require_nano(value, what=what)
    except MoneyError as exc:
        raise InvalidAmount(str(exc)) from None


def _key(value: object, what: str = "idempotency key") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or "\x00" in value:
        raise InvalidKey(f"{what} must be a non-empty string of at most 200 characters, got {value!r}")
    return value


_INT64_MAX = 2**63 - 1
_NEVER = _INT64_MAX  # no hold falls due


def _text(value: object, what: str) -> None:
    """A transfer's code or reference: text any database stores (PostgreSQL refuses NUL)."""
    if value is not None and (not isinstance(value, str) or "\x00" in value or len(value) > 1000):
        raise InvalidRequest(f"{what} must be text of at most 1000 characters without NUL, got {value!r}")


def _room(acc: Account, *sums: tuple[int, int]) -> None:
    """Refuse, before anything changes, an operation that would take one of the account's
    running sums (each given as (current, added)) past MAX_RUNNING_SUM_NANO."""
    for current, added in sums:
        if current + added > MAX_RUNNING_SUM_NANO:
            raise BalanceLimit(acc.code, current + added, running_sum=True)


class Ledger:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_batch: int = 4096,
        default_hold_ttl_us: int = 15 * 60 * 1_000_000,
        expiry_interval_s: float = 60.0,
        recent_keys: int = 100_000,
        clock: Clock = REAL_CLOCK,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._now_us = clock.now_us  # bound once: read per settlement
        self._accounts: dict[str, Account] = {}
        self._by_id: dict[int, Account] = {}
        self._holds: dict[str, Hold] = {}
        self._recent: OrderedDict[str, TransferResult] = OrderedDict()
        self._recent_max = recent_keys
        self._inflight: dict[str, asyncio.Future] = {}
        self._opening: dict[str, asyncio.Future] = {}
        self._default_ttl = default_hold_ttl_us
        writer_engine = make_sync_engine(engine.url.render_as_string(hide_password=False), synchronous=synchronous)
        self._writer = GroupCommitWriter(writer_engine, max_batch=max_batch, on_failure=self._commit_failed)
        # The expiry sweep runs under the backend's supervisor, or under one of its own when the
        # ledger runs alone (tests, tools), started and stopped with it.
        self._own_loops = supervisor is None
        self._loops = Supervisor(clock) if supervisor is None else supervisor
        # The sweep runs when the earliest hold falls due (a hold that falls due before the next
        # sweep wakes it), and at least every expiry_interval_s: not once a second for nothing.
        self._sweep_due_us = 0 if expiry_interval_s <= 0 else _NEVER
        if expiry_interval_s > 0:
            self._loops.every("ledger.hold_expiry", self._sweep, expiry_interval_s, first_run_s=0,
                              describe=f"when a hold falls due (at least every {expiry_interval_s:g}s)")
        self._available = False
        # Start time (µs, hex, fixed width) plus randomness: unique across restarts and replicas.
        self._epoch = f"{self._now_us():013x}{secrets.token_hex(2)}"
        self._minted = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._load()
        await self._writer.start()
        self._available = True
        for code, kind in chart.SYSTEM_ACCOUNTS.items():
            await self.open_account(code, kind)
        if self._own_loops:
            self._loops.start()

    async def close(self) -> None:
        if self._own_loops:
            await self._loops.stop()
        await self._writer.close()
        self._available = False

    async def __aenter__(self) -> Ledger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Wait until everything submitted so far is durable."""
        await self._writer.drain()

    async def _load(self) -> None:
        accounts: dict[str, Account] = {}
        by_id: dict[int, Account] = {}
        holds: dict[str, Hold] = {}
        async with self.engine.connect() as conn:
            for r in (await conn.execute(select(_A))).mappings():
                rule = chart.RULES.get(r["kind"])
                acc = Account(
                    id=r["id"], code=r["code"], kind=r["kind"], owner=r["owner"],
                    credit_normal=rule.credit_normal if rule else True,
                    debit_cap=bool(r["debits_must_not_exceed_credits"]),
                    credit_cap=bool(r["credits_must_not_exceed_debits"]),
                    debits_posted=r["debits_posted"], credits_posted=r["credits_posted"],
                    debits_pending=r["debits_pending"], credits_pending=r["credits_pending"],
                )
                accounts[acc.code] = acc
                by_id[acc.id] = acc
            q = select(_T).join(_O, _O.c.key == _T.c.key)
            for r in (await conn.execute(q)).mappings():
                holds[r["key"]] = Hold(
                    key=r["key"], debit=by_id[r["debit_account_id"]], credit=by_id[r["credit_account_id"]],
                    amount=r["amount"], code=r["code"], ref=r["ref"], expires_us=r["expires_us"],
                    created_us=r["created_us"],
                )
        self._accounts, self._by_id, self._holds = accounts, by_id, holds
        self._recent.clear()

    async def _commit_failed(self, exc: BaseException, batch: list[Op]) -> None:
        # Undo by reloading: later operations were checked against a state that included the
        # failed ones, so they fail too. Money only counts once it is durable.
        # Callers learn of the failure only once memory again matches the disk.
        self._available = False
        failed = batch + self._writer.take_queued()
        while True:
            try:
                await self._load()
                break
            except Exception as load_exc:
                log.error("ledger reload failed, retrying: %s", load_exc)
                await self.clock.sleep(0.5)
        failed += self._writer.take_queued()
        error = LedgerUnavailable(f"ledger write failed and was rolled back: {exc}")
        for op in failed:
            if not op.future.done():
                op.future.set_exception(error)
        self._available = True

    def mint_key(self, prefix: str) -> str:
        """A key no other process or restart can produce, increasing over time.

        Increasing keys land at the right edge of their unique index instead of at a random
        page, which keeps commits cheap as the tables grow.
        """
        self._minted += 1
        return f"{prefix}-{self._epoch}-{self._minted:010x}"

    # ------------------------------------------------------------------ reads
    def account(self, code: str) -> Account:
        try:
            return self._accounts[code]
        except KeyError:
            raise UnknownAccount(code) from None

    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def hold_info(self, key: str) -> Hold:
        try:
            return self._holds[key]
        except KeyError:
            raise HoldNotFound(key) from None

    def open_holds(self) -> list[Hold]:
        return list(self._holds.values())

    @property
    def stats(self) -> dict[str, int]:
        return {"batches": self._writer.batches, "operations": self._writer.ops, "queued": self._writer.queued}

    # ------------------------------------------------------------------ plumbing
    def _submit(self, op: Op, *, lazy: bool = False) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        op.future = fut
        self._writer.enqueue(op, lazy=lazy)
        return fut

    def _check_available(self) -> None:
        if not self._available:
            raise LedgerUnavailable("the ledger is not running (starting, stopped or recovering)")

    @staticmethod
    def _debit_check(acc: Account, amount: int) -> None:
        if acc.debit_cap:
            avail = acc.credits_posted - acc.debits_posted - acc.debits_pending
            if amount > avail:
                raise InsufficientFunds(acc.code, amount, max(avail, 0))

    @staticmethod
    def _credit_check(acc: Account, amount: int) -> None:
        if acc.debit_cap and acc.credit_normal:
            # What a client or host holds with us (pending credits included) stays far below int64.
            after = acc.credits_posted + acc.credits_pending - acc.debits_posted + amount
            if after > MAX_BALANCE_NANO:
                raise BalanceLimit(acc.code, after)
        if acc.credit_cap:
            avail = acc.debits_posted - acc.credits_posted - acc.credits_pending
            if amount > avail:
                raise InsufficientFunds(acc.code, amount, max(avail, 0))

    def _pair(self, debit: str, credit: str) -> tuple[Account, Account]:
        d, c = self.account(debit), self.account(credit)
        if d is c:
            raise InvalidRequest(f"a transfer needs two different accounts, got {debit!r} twice")
        return d, c

    @staticmethod
    def _row(key: str, kind: str, d: Account, c: Account, amount: int, code: str,
             ref: str | None, ts: int, pending_key: str | None = None,
             expires_us: int | None = None) -> tuple:
        # In writer.TRANSFER_COLUMNS order: positional rows bind several times faster.
        return (key, kind, d.id, c.id, amount, pending_key, code, ref, expires_us, ts)

    def _apply_posted(self, op: Op, key: str, d: Account, c: Account, amount: int, code: str,
                      ref: str | None, ts: int) -> None:
        d.debits_posted += amount
        c.credits_posted += amount
        op.transfers.append(self._row(key, "posted", d, c, amount, code, ref, ts))
        op.deltas.append((d.id, amount, 0, 0, 0))
        op.deltas.append((c.id, 0, amount, 0, 0))

    def _take_hold(self, key: str, ts: int) -> Hold:
        hold = self._holds.get(key)
        if hold is None:
            raise HoldNotFound(key)
        if hold.expires_us is not None and hold.expires_us <= ts:
            raise HoldResolved(key, "expired")
        return hold

    def _resolve(self, op: Op, hold: Hold, posted: int, kind: str, ts: int) -> None:
        """Release the hold and post `posted` of it (0 voids or expires it)."""
        d, c, held = hold.debit, hold.credit, hold.amount
        d.debits_pending -= held
        c.credits_pending -= held
        d.debits_posted += posted
        c.credits_posted += posted
        amount = posted if kind == "post_pending" else held
        op.transfers.append(
            self._row(f"{hold.key}/{_RESOLUTION_NAMES[kind]}", kind, d, c, amount, hold.code,
                      hold.ref, ts, pending_key=hold.key)
        )
        op.open_del.append(hold.key)
        op.deltas.append((d.id, posted, 0, -held, 0))
        op.deltas.append((c.id, 0, posted, 0, -held))
        del self._holds[hold.key]

    async def _resolved_how(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            kind = (await conn.execute(select(_T.c.kind).where(_T.c.pending_key == key))).scalar()
        return _RESOLUTION_NAMES.get(kind) if kind else None

    async def _missing_hold(self, key: str) -> Exception:
        how = await self._resolved_how(key)
        return HoldResolved(key, how) if how else HoldNotFound(key)

    # ------------------------------------------------------------------ accounts
    async def open_account(self, code: str, kind: str, *, owner: str | None = None) -> Account:
        """Open an account, or return it if it exists with the same kind (idempotent)."""
        self._check_available()
        code = _key(code, "account code")
        _text(owner, "account owner")
        existing = self._accounts.get(code)
        if existing is None and code in self._opening:
            await asyncio.shield(self._opening[code])
            existing = self._accounts.get(code)
        if existing is not None:
            if existing.kind != kind:
                raise AccountExists(f"account {code!r} exists with kind {existing.kind!r}, not {kind!r}")
            return existing
        rule = chart.RULES.get(kind)
        if rule is None:
            raise InvalidRequest(f"unknown account kind {kind!r}; known kinds: {', '.join(chart.RULES)}")
        acc = Account(id=0, code=code, kind=kind, owner=owner, credit_normal=rule.credit_normal,
                      debit_cap=rule.debit_cap, credit_cap=rule.credit_cap)
        op = Op(result=acc, new_account={
            "code": code, "kind": kind, "owner": owner, "debits_posted": 0, "credits_posted": 0,
            "debits_pending": 0, "credits_pending": 0,
            "debits_must_not_exceed_credits": rule.debit_cap,
            "credits_must_not_exceed_debits": rule.credit_cap, "created_us": self._now_us(),
        })
        fut = self._submit(op)
        self._opening[code] = fut
        try:
            await fut
        finally:
            self._opening.pop(code, None)
        self._accounts[code] = acc
        self._by_id[acc.id] = acc
        return acc

    # ------------------------------------------------------------------ idempotency
    async def _claim(self, key: str, fingerprint: tuple) -> TransferResult | None:
        """Return the stored result if `key` was used with the same content, raise if with
        different content, or claim the key for this caller (None)."""
        while True:
            hit = self._recent.get(key)
            if hit is None:
                pending = self._inflight.get(key)
                if pending is not None:
                    try:
                        await asyncio.shield(pending)
                    except Exception:
                        pass
                    continue
                fut = asyncio.get_running_loop().create_future()
                self._inflight[key] = fut
                try:
                    hit = await self._stored(key)
                except BaseException:
                    self._release(key, None)
                    raise
                if hit is None:
                    return None
                self._release(key, hit)
            if hit.fingerprint() != fingerprint:
                raise IdempotencyConflict(key, _differences(hit.fingerprint(), fingerprint))
            return dataclasses.replace(hit, replayed=True)

    def _release(self, key: str, result: TransferResult | None) -> None:
        fut = self._inflight.pop(key, None)
        if result is not None:
            self._recent[key] = result
            self._recent.move_to_end(key)
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _stored(self, key: str) -> TransferResult | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(_T).where(_T.c.key == key))).mappings().first()
        if r is None:
            return None
        return TransferResult(
            key=key, debit=self._by_id[r["debit_account_id"]].code,
            credit=self._by_id[r["credit_account_id"]].code, amount=r["amount"], code=r["code"], ref=r["ref"],
            kind=r["kind"],
        )

    # ------------------------------------------------------------------ transfers
    async def transfer(self, key: str, debit: str, credit: str, amount: int, *, code: str,
                       ref: str | None = None) -> TransferResult:
        """Move `amount` from `debit` to `credit` now. Replaying `key` changes nothing."""
        self._check_available()
        key = _key(key)
        amount = _amount(amount, "transfer amount")
        _text(code, "transfer code")
        _text(ref, "transfer reference")
        d, c = self._pair(debit, credit)
        result = TransferResult(key=key, debit=debit, credit=credit, amount=amount, code=code, ref=ref)
        stored = await self._claim(key, result.fingerprint())
        if stored is not None:
            return stored
        try:
            self._check_available()
            self._debit_check(d, amount)
            self._credit_check(c, amount)
            _room(d, (d.debits_posted, amount))
            _room(c, (c.credits_posted, amount))
            op = Op(result=result)
            self._apply_posted(op, key, d, c, amount, code, ref, self._now_us())
            await self._submit(op)
        except BaseException:
            self._release(key, None)
            raise
        self._release(key, result)
        return result

    def reserve(self, debit: str, credit: str, amount: int, *, code: str, ref: str | None = None,
                ttl_us: int | None = None, key: str | None = None, lazy: bool = False) -> tuple[Hold, asyncio.Future]:
        """Reserve `amount` on `debit` now, without waiting for the disk (the hot path).

        Returns the hold and the future of its durability. The key is minted here unless
        given: a given key must come from `mint_key()` (or go through `hold()`, which checks
        it). `lazy`: nobody waits for this hold to be durable, so it may wait for the next
        commit (see GroupCommitWriter.enqueue); a hold lost in a crash reserved nothing real.
        """
        self._check_available()
        amount = _amount(amount, "hold amount")
        _text(code, "hold code")
        _text(ref, "hold reference")
        d, c = self._pair(debit, credit)
        self._debit_check(d, amount)
        self._credit_check(c, amount)
        _room(d, (d.debits_pending, amount), (d.debits_posted + d.debits_pending, amount))
        _room(c, (c.credits_pending, amount), (c.credits_posted + c.credits_pending, amount))
        ts = self._now_us()
        ttl = self._default_ttl if ttl_us is None else ttl_us
        if ttl <= 0:
            raise InvalidRequest(f"hold ttl must be positive, got {ttl} µs")
        key = key or self.mint_key("h")
        hold = Hold(key=key, debit=d, credit=c, amount=amount, code=code, ref=ref,
                    expires_us=ts + ttl, created_us=ts)
        d.debits_pending += amount
        c.credits_pending += amount
        self._holds[key] = hold
        if hold.expires_us < self._sweep_due_us:  # falls due before the next sweep: move it up
            self._sweep_due_us = hold.expires_us
            self._loops.wake("ledger.hold_expiry")
        op = Op(result=hold)
        op.transfers.append(self._row(key, "pending", d, c, amount, code, ref, ts, expires_us=hold.expires_us))
        op.open_add.append((key, hold.expires_us))
        op.deltas.append((d.id, 0, 0, amount, 0))
        op.deltas.append((c.id, 0, 0, 0, amount))
        fut = self._submit(op, lazy=lazy)
        fut.add_done_callback(_consume)
        return hold, fut

    async def hold(self, debit: str, credit: str, amount: int, *, code: str, ref: str | None = None,
                   ttl_us: int | None = None, key: str | None = None) -> Hold:
        """Reserve `amount` and wait until the hold is durable. A given key is idempotent."""
        self._check_available()
        if key is None:
            hold, fut = self.reserve(debit, credit, amount, code=code, ref=ref, ttl_us=ttl_us)
            await fut
            return hold
        key = _key(key)
        amount = _amount(amount, "hold amount")
        self._pair(debit, credit)
        fingerprint = ("pending", debit, credit, amount, code, ref)
        stored = await self._claim(key, fingerprint)
        if stored is not None:
            existing = self._holds.get(key)
            if existing is None:
                raise HoldResolved(key, await self._resolved_how(key) or "resolved")
            return existing
        try:
            hold, fut = self.reserve(debit, credit, amount, code=code, ref=ref, ttl_us=ttl_us, key=key)
            await fut
        except BaseException:
            self._release(key, None)
            raise
        self._release(key, TransferResult(key, debit, credit, amount, code, ref, kind="pending"))
        return hold

    async def post(self, hold_key: str, amount: int | None = None) -> Settlement:
        """Post a hold, in full or in part (the rest is released). Resolves it for good."""
        self._check_available()
        ts = self._now_us()
        hold = self._holds.get(hold_key)
        if hold is None:
            raise await self._missing_hold(hold_key)
        hold = self._take_hold(hold_key, ts)
        posted = hold.amount if amount is None else _amount(amount, "post amount")
        if posted > hold.amount:
            raise HoldExceeded(hold_key, hold.amount, posted)
        _room(hold.debit, (hold.debit.debits_posted, posted))
        _room(hold.credit, (hold.credit.credits_posted, posted))
        result = Settlement(hold_key, posted, hold.amount - posted, 0)
        op = Op(result=result)
        self._resolve(op, hold, posted, "post_pending", ts)
        await self._submit(op)
        return result

    async def void(self, hold_key: str) -> Settlement:
        """Release a hold entirely. Resolves it for good."""
        self._check_available()
        ts = self._now_us()
        if hold_key not in self._holds:
            raise await self._missing_hold(hold_key)
        hold = self._take_hold(hold_key, ts)
        result = Settlement(hold_key, 0, hold.amount, 0)
        op = Op(result=result)
        self._resolve(op, hold, 0, "void_pending", ts)
        await self._submit(op)
        return result

    def settle_nowait(self, hold_key: str, *, charged: int, usage: Usage, host_share: int = 0,
                      host_account: str | None = None, fee: int = 0,
                      fee_account: str | None = None) -> tuple[Settlement, asyncio.Future]:
        """Settle a client request: post `charged` of its hold to revenue (0 voids it), pay
        the host its share, owe the channel it came through its `fee` (fees -> `fee_account`),
        and record the usage event, all in one transaction."""
        self._check_available()
        ts = self._now_us()
        for name, v in (("charged", charged), ("host_share", host_share), ("fee", fee)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidAmount(f"{name}: money must be an integer number of nano-USD, got {v!r}")
            if v < 0:
                raise InvalidAmount(f"{name}: must not be negative, got {v}")
        if host_share > charged:
            raise InvalidRequest(f"host_share {host_share} exceeds the amount charged {charged}")
        if fee > charged:
            raise InvalidRequest(f"fee {fee} exceeds the amount charged {charged}")
        n = usage.requests
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 2**31 - 1:
            raise InvalidRequest(f"usage requests must be an integer from 1 to 2**31-1, got {usage.requests!r}")
        for name in ("prompt_tokens", "completion_tokens", "price_prompt_per_mtok", "price_completion_per_mtok",
                     "started_us", "finished_us", "first_byte_us"):
            v = getattr(usage, name)
            if v is None and name == "first_byte_us":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT64_MAX:
                # Checked here, so that one request's absurd figures (an engine reporting 10**20
                # tokens) fail that request alone, not every other in its group commit.
                raise InvalidRequest(f"usage {name} must be an integer from 0 to 2**63-1, got {v!r}")
        for name in ("request_id", "client_id", "model", "key_id", "host_id"):
            _text(getattr(usage, name), f"usage {name}")
        if usage.status not in ("ok", "failed", "cancelled"):
            raise InvalidRequest(f"usage status must be ok, failed or cancelled, got {usage.status!r}")
        # A failed request is not charged and its host is not paid; a cancelled one (the client
        # went away mid-stream) pays for what was delivered.
        if usage.status == "failed" and (charged or host_share or fee):
            raise InvalidRequest(f"a failed request is not charged (got charged={charged}, host_share={host_share}, "
                                 f"fee={fee})")
        host = None
        if host_share:
            if host_account is None:
                raise InvalidRequest("a host_share needs the host's payable account")
            host = self.account(host_account)
        channel = None
        if fee:
            if fee_account is None:
                raise InvalidRequest("a fee needs the channel's payable account")
            channel = self.account(fee_account)
        hold = self._holds.get(hold_key)
        if hold is None:
            raise HoldNotFound(hold_key)
        hold = self._take_hold(hold_key, ts)
        if charged > hold.amount:
            raise HoldExceeded(hold_key, hold.amount, charged)
        _room(hold.debit, (hold.debit.debits_posted, charged))
        _room(hold.credit, (hold.credit.credits_posted, charged))
        if host is not None:
            _room(self._accounts[chart.GPU_COST], (self._accounts[chart.GPU_COST].debits_posted, host_share))
            _room(host, (host.credits_posted, host_share))
            self._credit_check(host, host_share)
        if channel is not None:
            _room(self._accounts[chart.FEES], (self._accounts[chart.FEES].debits_posted, fee))
            _room(channel, (channel.credits_posted, fee))
        result = Settlement(hold_key, charged, hold.amount - charged, host_share)
        op = Op(result=result)
        self._resolve(op, hold, charged, "post_pending" if charged else "void_pending", ts)
        if host is not None:
            cost = self._accounts[chart.GPU_COST]
            self._apply_posted(op, f"{hold_key}/host", cost, host, host_share, "host_share", usage.request_id, ts)
        if channel is not None:
            self._apply_posted(op, f"{hold_key}/fee", self._accounts[chart.FEES], channel, fee, "channel_fee",
                               usage.request_id, ts)
        op.usage.append((  # writer.USAGE_COLUMNS order
            usage.request_id, hold_key, usage.client_id, usage.key_id, usage.model, usage.host_id,
            usage.prompt_tokens, usage.completion_tokens, usage.price_prompt_per_mtok,
            usage.price_completion_per_mtok, charged, host_share, usage.status, usage.started_us,
            usage.first_byte_us, usage.finished_us, ts, usage.requests, fee,
        ))
        return result, self._submit(op)

    async def settle(self, hold_key: str, *, charged: int, usage: Usage, host_share: int = 0,
                     host_account: str | None = None, fee: int = 0, fee_account: str | None = None) -> Settlement:
        if hold_key not in self._holds:
            raise await self._missing_hold(hold_key)
        result, fut = self.settle_nowait(hold_key, charged=charged, usage=usage, host_share=host_share,
                                         host_account=host_account, fee=fee, fee_account=fee_account)
        await fut
        return result

    # ------------------------------------------------------------------ recovery
    async def void_open_holds(self) -> tuple[int, int]:
        """Void every open hold, all in one transaction. For start-up, before any request: the
        holds then open were left by requests in flight when the previous run died, and no request
        survives a restart, so their credit is released now rather than when they expire.
        Returns (holds voided, nano-USD released)."""
        self._check_available()
        holds = list(self._holds.values())
        if not holds:
            return 0, 0
        ts = self._now_us()
        op = Op(result=None)
        for hold in holds:
            self._resolve(op, hold, 0, "void_pending", ts)
        await self._submit(op)
        return len(holds), sum(h.amount for h in holds)

    # ------------------------------------------------------------------ expiry
    def _sweep(self) -> float | None:
        """The expiry loop's run: release what is due; return the seconds until the next hold falls
        due (the supervisor runs it then, or after its interval if that comes first)."""
        self.expire_due()
        now = self._now_us()
        earliest = min((h.expires_us for h in self._holds.values() if h.expires_us is not None), default=None)
        self._sweep_due_us = _NEVER if earliest is None else earliest
        return None if earliest is None else max(earliest - now, 0) / 1_000_000

    def expire_due(self, now: int | None = None) -> list[asyncio.Future]:
        """Release every hold whose time ran out. Returns the durability futures."""
        if not self._available:
            return []
        ts = self._now_us() if now is None else now
        due = [h for h in self._holds.values() if h.expires_us is not None and h.expires_us <= ts]
        futures = []
        for hold in due:
            op = Op(result=Settlement(hold.key, 0, hold.amount, 0))
            self._resolve(op, hold, 0, "expire_pending", ts)
            fut = self._submit(op)
            fut.add_done_callback(_consume)
            futures.append(fut)
        if due:
            log.info("released %d expired holds", len(due))
        return futures


def _consume(fut: asyncio.Future) -> None:
    """Fire-and-forget futures: read the exception so it is logged once, not lost."""
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("ledger write failed: %s", fut.exception())
