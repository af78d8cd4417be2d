"""Host payouts: a supervised loop (`billing.payouts`) pays each host whose payable reached its
threshold, through a Stripe Connect transfer, or records it as due for the operator to pay by
other means ("manual") and mark paid.

One payout, in order, each step found again by the next run if a crash cuts it short:
1. claim: a pending `host_payout` row with the amount fixed (the whole payable then, in cents);
   the partial unique index lets one pending payout per host exist, whoever claims it;
2. Stripe: one Transfer whose idempotency key and transfer group are the payout id;
3. the ledger: host payable -> payment clearing, code `host_payout`, key "payout:{id}";
4. the row marked paid.
A pending payout is finished by the next run: a ledger posting under its key means only step 4 is
left; else Stripe is asked for the transfers in its group, and only when there is none is the
transfer created (with the same idempotency key). So a crash anywhere ends, after the restart, in
exactly one transfer and one posting. A failed attempt waits `retry_backoff_s` before the next.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from backend.billing.errors import NotConfigured, StripeUnavailable
from backend.billing.payouts import policy
from backend.billing.payouts.errors import PayoutConflict, PayoutNotFound
from backend.billing.payouts.records import PayoutRecords, PayoutRow, SettingsRow
from backend.billing.stripe_gateway import StripeGateway
from backend.field_errors import FieldError
from backend.fleet.registry import Fleet, FleetError
from backend.ledger import chart
from backend.ledger.errors import InsufficientFunds, LedgerError, UnknownAccount
from backend.ledger.service import Ledger
from backend.ledger.tables import LedgerTransfer
from backend.money import MoneyError, format_usd, parse_usd
from backend.runtime.bus import EventBus
from backend.runtime.clock import Clock
from backend.runtime.supervisor import Supervisor
from backend.settings import PayoutSettings

log = logging.getLogger(__name__)

LOOP = "billing.payouts"
PAYOUT_CODE = "host_payout"  # the host self-service reads paid amounts by this code
_T = LedgerTransfer.__table__
KEEP = object()  # a setting left as it is


def ledger_key(payout_id: str) -> str:
    return f"payout:{payout_id}"


def usd(nano: int) -> str:
    return format_usd(nano, places=2)


@dataclass
class RunResult:
    """What one run did: payouts claimed, paid, left for the operator, to be retried, failed."""

    claimed: list[PayoutRow] = field(default_factory=list)
    paid: list[PayoutRow] = field(default_factory=list)
    awaiting_operator: list[PayoutRow] = field(default_factory=list)
    retrying: list[PayoutRow] = field(default_factory=list)
    failed: list[PayoutRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HostPayoutStatus:
    """A host's payouts at a glance: what the Fleet drill-down and `tokenmill-host payout` show."""

    host_id: str
    host_name: str
    method: str
    stripe_account: str | None
    threshold: int
    threshold_is_default: bool
    minimum: int
    owed: int  # the host payable's posted balance
    failures: int
    next_attempt_us: int
    next_run_us: int | None  # when the loop runs next
    next: str  # the next payout, in words
    pending: PayoutRow | None
    last_paid: PayoutRow | None


class HostPayouts:
    def __init__(self, settings: PayoutSettings, records: PayoutRecords, ledger: Ledger, gateway: StripeGateway,
                 fleet: Fleet, bus: EventBus, clock: Clock, supervisor: Supervisor | None = None) -> None:
        self.settings, self.records, self.ledger, self.gateway = settings, records, ledger, gateway
        self.fleet, self.bus, self.clock, self.supervisor = fleet, bus, clock, supervisor
        self._lock = asyncio.Lock()  # one run at a time in this process (the database guards across processes)
        # Called with (step, payout id) after "transferred" and "posted": tests stop the service there.
        self.step_hook: Callable[[str, str], Awaitable[None]] | None = None
        if supervisor is not None:
            supervisor.every(LOOP, self._tick, settings.interval_s, first_run_s=0,
                             describe=f"every {settings.interval_s:g}s (and after a failed attempt's backoff)")

    # ---------------------------------------------------------------- the loop
    async def close(self) -> None:
        """Stop the loop, mid-payout too: whatever step it reached, the next start finishes it."""
        if self.supervisor is not None:
            await self.supervisor.remove(LOOP)

    async def _tick(self) -> float | None:
        """One supervised run; the first one also finishes what a previous run left pending."""
        await self.run()
        waits = [s.next_attempt_us for s in await self.records.all_settings() if s.method != "none"
                 and s.next_attempt_us > self.clock.now_us()]
        return (min(waits) - self.clock.now_us()) / 1e6 if waits else None

    async def run(self, host_id: str | None = None, *, ignore_threshold: bool = False) -> RunResult:
        """Finish pending payouts and pay every host that is due (or only `host_id`). `ignore_threshold`
        (one host, by the operator): pay what it is owed now, below its threshold too; also skips
        the wait after a failure."""
        if host_id is not None:
            self._host_name(host_id)
        result = RunResult()
        async with self._lock:
            now = self.clock.now_us()
            rows = {s.host_id: s for s in await self.records.all_settings() if host_id in (None, s.host_id)}
            busy: set[str] = set()
            for p in await self.records.pending(host_id):
                busy.add(p.host_id)
                s = rows.get(p.host_id)
                if p.method == "manual":
                    result.awaiting_operator.append(p)
                elif s is not None and s.next_attempt_us > now and not ignore_threshold:
                    result.retrying.append(p)
                else:
                    await self._finish(p, s, result)
            for s in rows.values():
                if s.host_id in busy or s.method == "none" or (s.next_attempt_us > now and not ignore_threshold):
                    continue
                if s.method == "stripe" and not self.gateway.configured:
                    continue  # settings refuse Stripe without it; a key removed later pauses these payouts
                await self._claim(s, result, ignore_threshold)
        return result

    def _payable(self, host_id: str) -> int:
        try:
            return self.ledger.account(chart.host_account(host_id)).available
        except UnknownAccount:
            return 0

    def threshold(self, s: SettingsRow | None) -> int:
        return s.threshold if s is not None and s.threshold is not None else self.settings.default_threshold_nano

    async def _claim(self, s: SettingsRow, result: RunResult, ignore_threshold: bool) -> None:
        payable = self._payable(s.host_id)
        amount = policy.payout_amount(payable)
        if amount <= 0 or not (ignore_threshold or policy.is_due(payable, self.threshold(s))):
            return
        payout_id = f"po_{secrets.token_hex(12)}"
        if not await self.records.claim(payout_id, s.host_id, amount, s.method, s.stripe_account or ""):
            return  # another process claimed one first
        p = await self.records.payout(payout_id)
        assert p is not None
        result.claimed.append(p)
        name = self.host_name(s.host_id)
        if p.method == "manual":
            self._event("billing.payout_due", s.host_id,
                        f"payout {p.id} of {usd(p.amount)} to host {name} is due: pay it by other means, then "
                        f"record it with `tokenmill payouts mark-paid {p.id} --reference ...`", "warning")
            result.awaiting_operator.append(p)
            return
        self._event("billing.payout_started", s.host_id,
                    f"payout {p.id} of {usd(p.amount)} to host {name} ({p.destination}) started")
        await self._finish(p, s, result)

    # ---------------------------------------------------------------- finishing a Stripe payout
    async def _posted(self, payout_id: str) -> bool:
        async with self.ledger.engine.connect() as conn:
            found = (await conn.execute(select(_T.c.id).where(_T.c.key == ledger_key(payout_id)))).first()
        return found is not None

    async def _finish(self, p: PayoutRow, s: SettingsRow | None, result: RunResult) -> None:
        if await self._posted(p.id):  # the ledger has it: a crash came between the posting and the row
            await self._paid(p, p.stripe_transfer_id, "stripe", p.reference, result)
            return
        try:
            transfer = await self._transfer(p)
        except StripeUnavailable as exc:
            await self._attempt_failed(p, s, str(exc), final=not exc.retryable, result=result)
            return
        except NotConfigured as exc:
            await self._attempt_failed(p, s, str(exc), final=False, result=result)
            return
        if int(transfer.get("amount") or 0) * policy.NANO_PER_CENT != p.amount:
            log.error("payout %s: Stripe's transfer %s is for %s cents, the payout for %s", p.id, transfer.get("id"),
                      transfer.get("amount"), usd(p.amount))
        await self.records.update(p.id, stripe_transfer_id=transfer.get("id"))
        await self._step("transferred", p.id)
        try:
            await self._post(p)
        except LedgerError as exc:
            # Stripe paid: the posting waits for the next run, which finds the transfer by its group.
            await self._attempt_failed(p, s, f"paid through Stripe, not yet recorded in the ledger: {exc}",
                                       final=False, result=result)
            return
        await self._step("posted", p.id)
        await self._paid(p, transfer.get("id"), "stripe", "", result)

    async def _transfer(self, p: PayoutRow) -> dict:
        """The payout's Stripe transfer: the one Stripe already made for it, else a new one.

        Only Stripe's refusal to create the transfer can fail the payout (the next one is new): an
        error while finding what Stripe already made (a rolled key, a 4xx) leaves it pending, since
        failing a payout Stripe had paid would pay the host again."""
        self.gateway.require()
        try:
            found = await self.gateway.transfers_in_group(p.id)
        except StripeUnavailable as exc:
            raise StripeUnavailable(str(exc), retryable=True) from None
        if found:
            return found[0]
        if p.stripe_transfer_id:
            raise StripeUnavailable(f"Stripe made transfer {p.stripe_transfer_id} for it but does not list it in "
                                    f"its transfer group yet", retryable=True)
        return await self.gateway.create_transfer(
            amount_cents=p.amount // policy.NANO_PER_CENT, destination=p.destination, transfer_group=p.id,
            metadata={"payout_id": p.id, "host_id": p.host_id}, idempotency_key=p.id)

    async def _post(self, p: PayoutRow) -> None:
        await self.ledger.transfer(ledger_key(p.id), chart.host_account(p.host_id), chart.PAYMENT_CLEARING,
                                   p.amount, code=PAYOUT_CODE, ref=p.id)

    async def _step(self, step: str, payout_id: str) -> None:
        if self.step_hook is not None:
            await self.step_hook(step, payout_id)

    async def _paid(self, p: PayoutRow, transfer_id: str | None, by: str, reference: str, result: RunResult) -> None:
        values = {"state": "paid", "paid_us": self.clock.now_us(), "paid_by": by, "failure": ""}
        if transfer_id:
            values["stripe_transfer_id"] = transfer_id
        if reference:
            values["reference"] = reference
        changed = await self.records.update(p.id, **values)
        s = await self.records.settings(p.host_id)
        if s is not None and (s.failures or s.next_attempt_us):
            await self.records.set_retry(p.host_id, 0, 0)
        done = await self.records.payout(p.id)
        assert done is not None
        result.paid.append(done)
        if changed:
            where = f" ({transfer_id})" if transfer_id else f" (reference: {reference})" if reference else ""
            self._event("billing.payout_paid", p.host_id,
                        f"payout {p.id} of {usd(p.amount)} to host {self.host_name(p.host_id)} paid{where}")

    async def _attempt_failed(self, p: PayoutRow, s: SettingsRow | None, message: str, *, final: bool,
                              result: RunResult) -> None:
        """A retryable failure leaves the payout pending (the same transfer is asked for again); a
        refusal by Stripe fails it, and the next payout is a new one. Either way the host waits."""
        failures = (s.failures if s is not None else 0) + 1
        wait_s = policy.retry_wait_s(self.settings.retry_backoff_s, failures)
        await self.records.set_retry(p.host_id, failures, self.clock.now_us() + round(wait_s * 1e6))
        await self.records.attempted(p.id, message)
        name = self.host_name(p.host_id)
        if final and await self.records.update(p.id, state="failed", failure=message):
            row = await self.records.payout(p.id)
            result.failed.append(row or p)
            self._event("billing.payout_failed", p.host_id,
                        f"payout {p.id} of {usd(p.amount)} to host {name} failed: {message}; "
                        f"the next one in {wait_s:g}s", "error")
            return
        row = await self.records.payout(p.id)
        result.retrying.append(row or p)
        self._event("billing.payout_retry", p.host_id,
                    f"payout {p.id} of {usd(p.amount)} to host {name}: {message}; trying again in {wait_s:g}s",
                    "warning")

    # ---------------------------------------------------------------- the operator's
    async def mark_paid(self, payout_id: str, reference: str, by: str = "operator") -> PayoutRow:
        """A manual payout the operator paid by other means: posted to the ledger, kept with its reference.
        Told twice with the same reference, it answers the payout as paid."""
        reference = policy.check_reference(reference)
        p = await self.records.payout(payout_id)
        if p is None:
            raise PayoutNotFound(f"no payout {payout_id!r}")
        if p.state == "paid" and p.reference == reference:
            return p
        if p.state == "pending" and p.method != "manual":
            raise PayoutConflict(f"payout {p.id} is paid through Stripe by the payout loop, not by hand")
        # Taken for this reference first: a second reference, or a cancel, at the same moment finds it taken.
        if not await self.records.claim_reference(p.id, reference):
            p = await self.records.payout(payout_id) or p
            if p.state == "paid" and p.reference == reference:
                return p
            said = f" (reference {p.reference!r})" if p.reference else ""
            what = "being recorded as paid" if p.state == "pending" else p.state
            raise PayoutConflict(f"payout {p.id} is {what}{said}")
        # A refusal writes nothing: the payout is given back. A stop before the answer leaves it taken
        # for this reference, which finishes it when told again (the posting's key allows one posting).
        try:
            await self._post(p)
        except LedgerError as exc:
            await self.records.release_reference(p.id, reference)
            if isinstance(exc, InsufficientFunds):
                raise PayoutConflict(f"the host's payable cannot cover payout {p.id}: {exc}") from None
            raise
        await self._paid(p, None, by, reference, RunResult())
        done = await self.records.payout(p.id)
        assert done is not None
        return done

    async def cancel(self, payout_id: str, by: str = "operator") -> PayoutRow:
        """Cancel a manual payout that is due and will not be paid by other means; the amount stays
        owed, and the next run pays it to the host's destination then. A payout being recorded as
        paid, or one the loop pays through Stripe, cannot be canceled."""
        p = await self.records.payout(payout_id)
        if p is None:
            raise PayoutNotFound(f"no payout {payout_id!r}")
        if p.state == "canceled":
            return p
        if p.state == "pending" and p.method != "manual":
            raise PayoutConflict(f"payout {p.id} is paid through Stripe by the payout loop: it cannot be canceled")
        if not await self.records.cancel_manual(p.id, f"canceled by {by}"):
            p = await self.records.payout(payout_id) or p
            if p.state == "canceled":
                return p
            said = f" (reference {p.reference!r})" if p.reference else ""
            what = "being recorded as paid" if p.state == "pending" else p.state
            raise PayoutConflict(f"payout {p.id} is {what}{said}")
        self._event("billing.payout_canceled", p.host_id,
                    f"payout {p.id} of {usd(p.amount)} to host {self.host_name(p.host_id)} canceled by {by}")
        if self.supervisor is not None:
            self.supervisor.wake(LOOP)
        done = await self.records.payout(p.id)
        assert done is not None
        return done

    async def configure(self, host_id: str, *, by: str, threshold: object = KEEP, method: object = KEEP,
                        stripe_account: object = KEEP) -> SettingsRow:
        """Change a host's threshold (nano-USD, or None for the default) and destination. Giving a
        Stripe account makes Stripe the destination.

        A manual payout not yet paid is canceled when the operator changes the destination (the
        next run pays through the new one), unless it is being recorded as paid. When the host
        changes it, the payout stays due: the operator may be paying it by other means right now,
        and canceling it would have the new destination pay the same money again. The operator marks
        it paid or cancels it (`tokenmill payouts cancel`); then the new destination takes over."""
        self._host_name(host_id)
        old = await self.records.settings(host_id)
        values: dict = {}
        if threshold is not KEEP:
            values["threshold"] = None if threshold is None else \
                policy.check_threshold(int(threshold), self.settings.minimum_threshold_nano)  # type: ignore[call-overload]
        account = old.stripe_account if old is not None else None
        if stripe_account is not KEEP and stripe_account is not None:
            account = policy.check_stripe_account(str(stripe_account))
            values["stripe_account"] = account
            if method is KEEP:
                method = "stripe"
        if method is not KEEP:
            if method not in ("none", "stripe", "manual"):
                raise FieldError("method", f"must be stripe, manual or none, got {method!r}")
            if method == "stripe" and account is None:
                raise FieldError("stripe_account", "paying through Stripe needs the host's Stripe Connect account")
            values["method"] = method
        if values.get("method") == "stripe":
            self.gateway.require()  # NotConfigured names [billing] stripe_secret_key
        before = (old.method, old.stripe_account) if old is not None else ("none", None)
        after = (values.get("method", before[0]), values.get("stripe_account", before[1]))
        if after != before:
            values.update(failures=0, next_attempt_us=0)  # a new destination is tried at once
            for p in await self.records.pending(host_id):
                if p.method != "manual":
                    continue
                if by != "operator":
                    self._event("billing.payout_due", host_id,
                                f"host {self.host_name(host_id)} changed its payout destination to {after[0]}; "
                                f"payout {p.id} of {usd(p.amount)} stays due by other means: mark it paid or "
                                f"cancel it (`tokenmill payouts cancel {p.id}`), then payouts go to the new "
                                f"destination", "warning")
                elif await self.records.cancel_manual(p.id, f"destination changed to {after[0]} by {by}"):
                    self._event("billing.payout_canceled", host_id,
                                f"payout {p.id} of {usd(p.amount)} canceled: the destination changed")
        row = await self.records.save_settings(host_id, by=by, **values)
        if after != before and self.supervisor is not None and after[0] != "none":
            self.supervisor.wake(LOOP)  # a host already over its threshold is paid now, not at the next interval
        return row

    # ---------------------------------------------------------------- reads
    async def status(self, host_id: str) -> HostPayoutStatus:
        name = self._host_name(host_id)
        s = await self.records.settings(host_id)
        pending = (await self.records.pending(host_id) or [None])[0]
        last = await self.records.last_paid(host_id)
        owed = self._payable(host_id)
        threshold = self.threshold(s)
        next_run = None
        if self.supervisor is not None:
            try:
                next_run = self.supervisor.info(LOOP).next_run_us
            except KeyError:
                pass
        method = s.method if s is not None else "none"
        nxt = self._next_words(method, s, pending, owed, threshold, next_run)
        return HostPayoutStatus(host_id, name, method, s.stripe_account if s else None, threshold,
                                s is None or s.threshold is None, self.settings.minimum_threshold_nano, owed,
                                s.failures if s else 0, s.next_attempt_us if s else 0, next_run, nxt, pending, last)

    def _next_words(self, method: str, s: SettingsRow | None, pending: PayoutRow | None, owed: int,
                    threshold: int, next_run_us: int | None) -> str:
        now = self.clock.now_us()
        if pending is not None:
            if pending.method == "manual" and pending.reference:
                return f"{usd(pending.amount)} being recorded as paid ({pending.id}, reference {pending.reference!r})"
            if pending.method == "manual":
                return f"{usd(pending.amount)} due ({pending.id}): the operator pays it and records it"
            if s is not None and s.next_attempt_us > now:
                return (f"{usd(pending.amount)} being paid ({pending.id}); attempt {pending.attempts + 1} in "
                        f"{(s.next_attempt_us - now) / 1e6:.0f}s (last: {pending.failure})")
            return f"{usd(pending.amount)} being paid to {pending.destination} ({pending.id})"
        if method == "none":
            return ("no destination: the host sets its Stripe account (tokenmill-host payout --stripe-account "
                    "acct_...) or the operator records payments by hand (method manual)")
        if method == "stripe" and not self.gateway.configured:
            return "paused: Stripe is not configured on this server ([billing] stripe_secret_key)"
        if policy.is_due(owed, threshold):
            when = now if s is None or s.next_attempt_us <= now else s.next_attempt_us
            if next_run_us is not None:
                when = max(when, next_run_us)
            return f"{usd(policy.payout_amount(owed))} at the next run, in {max(when - now, 0) / 1e6:.0f}s"
        return f"when the amount owed reaches {usd(threshold)} ({usd(max(threshold - owed, 0))} to go)"

    async def payouts(self, *, host_id: str | None = None, state: str | None = None,
                      limit: int = 100) -> list[PayoutRow]:
        return await self.records.payouts(host_id=host_id, state=state, limit=limit)

    def host_name(self, host_id: str) -> str:
        try:
            return self.fleet.host(host_id).name
        except FleetError:
            return host_id

    def _host_name(self, host_id: str) -> str:
        try:
            return self.fleet.host(host_id).name
        except FleetError:
            raise PayoutNotFound(f"no host {host_id!r}") from None

    def _event(self, kind: str, host_id: str, message: str, level: str = "info") -> None:
        self.bus.add(kind, host_id, message, level)


def parse_threshold(text: str | None) -> object:
    """The wire's threshold_usd: KEEP when absent, None for "default", else nano-USD."""
    if text is None:
        return KEEP
    if text.strip().lower() == "default":
        return None
    try:
        return parse_usd(text, what="threshold_usd")
    except MoneyError as exc:
        raise FieldError("threshold_usd", str(exc)) from None
