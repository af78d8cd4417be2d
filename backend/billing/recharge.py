"""Auto-recharge: when a client's available credit (balance minus holds) drops below the threshold
it chose, charge its saved card the amount it chose, off-session, once per crossing.

The router calls `check(client_id)` after every hold it takes: a dict read and two comparisons,
no I/O. A crossing starts one background task, which claims the client's next sequence number in
the database (never two recharges in flight for a client, across router processes too) and asks
Stripe for one PaymentIntent with the idempotency key "recharge:{client}:{seq}". Credit arrives
only from Stripe's webhook, like any payment.

Once per crossing: the trigger is armed while available credit is at or above the threshold and
fires once when it drops below; while a recharge is in flight nothing else fires. Its outcome
re-arms it: after a success that left the client still below the threshold, the next request
recharges again (within the monthly cap); after a decline the next request below the threshold
tries again, and `recharge_max_failures` failures in a row turn auto-recharge off and say why, so a
declined card is tried a few times, not on every request.

Only an answer from Stripe that it made no charge fails a recharge: a decline, or a request it
refused (4xx). When Stripe cannot be reached, or answers 5xx (its result is then indeterminate: it
may have charged the card, and its idempotency layer replays the same 500), the outcome is unknown:
the recharge stays in flight (no second one for the client, and it counts against the monthly cap)
and Stripe is asked what it did, by listing the customer's PaymentIntents and finding the one whose
metadata names our payment, never by creating one. Found, it is acted on as a fresh answer would be;
not found, Stripe made no charge and the recharge fails (one failure). Until the list answers it is
asked again in the background. A run that starts with a recharge left in flight asks the same way
first, and only if Stripe made none asks to create it again with the same idempotency key (Stripe
keeps those for a day only, so asking again blindly after a day could charge twice).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from backend.billing.errors import NoSavedCard, NotConfigured, StripeUnavailable
from backend.billing.records import BillingRecords, BillingRow, PaymentRow, month_start_us
from backend.billing.stripe_gateway import NANO_PER_CENT, CardDeclined, StripeGateway
from backend.field_errors import FieldError
from backend.ledger import chart
from backend.ledger.errors import UnknownAccount
from backend.ledger.service import Ledger
from backend.money import format_usd
from backend.runtime.bus import BillingEvent, EventBus
from backend.runtime.clock import Clock
from backend.settings import BillingSettings

log = logging.getLogger(__name__)

SAVE_A_CARD = "top up once through POST /v1/billing/checkout to save a card"
# Seconds between asking Stripe again for a recharge it could not be reached for (the library has
# already retried twice): then its outcome is unknown and Stripe's list of the customer's
# PaymentIntents is asked what it did, with the same waits between tries, then the last one again
# and again until it answers.
RETRY_S = (5.0, 30.0, 120.0)
# Stripe's clock and ours may differ: the list is asked from this long before the payment was made.
CLOCK_SLACK_S = 3600
CHARGED = ("succeeded", "processing")  # a PaymentIntent that took (or is taking) the money


@dataclass(slots=True)
class Plan:
    """A client's auto-recharge, in memory for the hot path."""

    threshold: int
    amount: int
    armed: bool = True  # fires at the next drop below the threshold
    busy: bool = False  # a recharge is being started or waits for Stripe's answer


class AutoRecharge:
    def __init__(self, settings: BillingSettings, ledger: Ledger, records: BillingRecords, gateway: StripeGateway,
                 bus: EventBus, clock: Clock) -> None:
        self.settings, self.ledger, self.records, self.gateway = settings, ledger, records, gateway
        self.bus, self.clock = bus, clock
        self._plans: dict[str, Plan] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.retry_s = RETRY_S

    async def load(self) -> None:
        """The enabled plans; a recharge left in flight by a previous run without Stripe's answer is
        looked for at Stripe (it may have charged the card), and asked for again with the same
        idempotency key only if Stripe made none."""
        for row in await self.records.enabled_billing():
            self._plans[row.client_id] = Plan(row.recharge_threshold, row.recharge_amount,
                                              busy=row.recharge_in_flight is not None)
        for row in await self.records.in_flight():
            pay = await self.records.payment(row.recharge_in_flight or "")
            if pay is not None and pay.status == "open" and pay.payment_intent_id is None:
                self._spawn(self._resume(pay, row))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def plan(self, client_id: str) -> Plan | None:
        return self._plans.get(client_id)

    @property
    def working(self) -> int:
        """Recharges being started or resumed now (background tasks)."""
        return len(self._tasks)

    # ---------------------------------------------------------------- the hot path
    def check(self, client_id: str) -> None:
        """After a hold for the client: start a recharge if its credit just dropped below its threshold."""
        plan = self._plans.get(client_id)
        if plan is None:
            return
        try:
            available = self.ledger.account(chart.client_account(client_id)).available
        except UnknownAccount:
            return
        if available >= plan.threshold:
            plan.armed = True
            return
        if not plan.armed or plan.busy or self._closed:
            return
        plan.armed, plan.busy = False, True
        self._spawn(self._start(client_id, plan))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- a recharge
    async def _start(self, client_id: str, plan: Plan) -> None:
        started = False
        try:
            started = await self._claim_and_charge(client_id)
        except Exception as exc:  # a background task: say it, never lose it
            log.exception("auto-recharge for %s failed to start", client_id)
            self._event("billing.recharge_failed", client_id, f"auto-recharge could not start: {exc}", "error")
        finally:
            if not started:
                plan.busy = False

    async def _claim_and_charge(self, client_id: str) -> bool:
        row = await self.records.billing(client_id)
        if row is None or not row.recharge_enabled or row.recharge_in_flight is not None:
            return False  # off, or one in flight already (another router process started it)
        if not row.payment_method_id or not row.stripe_customer_id or not self.gateway.configured:
            return False
        if row.recharge_monthly_cap is not None:
            spent = await self.records.recharged_since(client_id, month_start_us(self.clock.now_us()))
            if spent + row.recharge_amount > row.recharge_monthly_cap:
                self._event("billing.recharge_capped", client_id,
                            f"auto-recharge of {format_usd(row.recharge_amount, places=2)} skipped: "
                            f"{format_usd(spent, places=2)} recharged this month, the monthly cap is "
                            f"{format_usd(row.recharge_monthly_cap, places=2)}", "warning")
                return False
        payment_id = f"pay_{secrets.token_hex(12)}"
        if not await self.records.claim_recharge(client_id, row.recharge_seq, payment_id, row.recharge_amount):
            return False  # another process started one
        pay = await self.records.payment(payment_id)
        assert pay is not None
        self._event("billing.recharge_started", client_id,
                    f"auto-recharge of {format_usd(pay.amount, places=2)} started ({pay.idempotency_key})")
        await self._charge(pay, row)
        return True

    async def _resume(self, pay: PaymentRow, row: BillingRow) -> None:
        """A recharge a previous run left in flight without Stripe's answer: look for it at Stripe
        first; only if Stripe made none, ask for it again with the same idempotency key."""
        try:
            self._event("billing.recharge_unknown", pay.client_id,
                        f"auto-recharge of {format_usd(pay.amount, places=2)} ({pay.idempotency_key}) was left in "
                        f"flight by the last run without Stripe's answer: asking Stripe what it did", "warning")
            asked, pi = await self._look_up(pay, row)
            if not asked:
                return
            if pi is not None:
                await self._found(pay, pi)
                return
            self._event("billing.recharge_resumed", pay.client_id,
                        f"auto-recharge of {format_usd(pay.amount, places=2)}: Stripe made no charge for it: "
                        f"asking again with the same key ({pay.idempotency_key})")
            await self._charge(pay, row)
        except Exception as exc:  # a background task: say it, never lose it
            log.exception("auto-recharge %s could not be resumed", pay.id)
            self._event("billing.recharge_failed", pay.client_id,
                        f"auto-recharge {pay.id} left in flight could not be resumed: {exc}", "error")

    async def _charge(self, pay: PaymentRow, row: BillingRow) -> None:
        """Ask Stripe to charge the saved card; its answer now is a decline (recorded) or a
        PaymentIntent whose success the webhook will credit. No answer: see `_unknown`."""
        try:
            pi = await self._ask(pay, row)
        except CardDeclined as exc:
            pi_id = exc.payment_intent.get("id") if exc.payment_intent else None
            status = "requires_action" if exc.code == "authentication_required" else "failed"
            await self.failed(pay, status, exc.message, payment_intent_id=pi_id)
            return
        except StripeUnavailable as exc:
            if exc.retryable:  # it may have charged the card: never a failure on that alone
                await self._unknown(pay, row, str(exc))
            else:  # Stripe refused the request as such: it made no charge
                await self.failed(pay, "failed", str(exc), what="was refused by Stripe")
            return
        except NotConfigured as exc:
            await self.failed(pay, "failed", str(exc), what="could not be asked of Stripe")
            return
        await self._act(pay, pi)

    async def _unknown(self, pay: PaymentRow, row: BillingRow, cause: str) -> None:
        """Stripe gave no answer to the charge after every try: it may have made it. The recharge
        stays in flight (and in the monthly cap) while Stripe's list says what it did."""
        self._event("billing.recharge_unknown", pay.client_id,
                    f"auto-recharge of {format_usd(pay.amount, places=2)} ({pay.idempotency_key}): outcome unknown "
                    f"after {len(self.retry_s) + 1} tries ({cause}): asking Stripe what it did; it stays in "
                    f"flight meanwhile", "warning")
        asked, pi = await self._look_up(pay, row)
        if not asked:
            return
        if pi is not None:
            await self._found(pay, pi)
            return
        await self.failed(pay, "failed", f"Stripe made no charge ({cause})", what="failed")

    async def _look_up(self, pay: PaymentRow, row: BillingRow) -> tuple[bool, dict | None]:
        """Stripe's PaymentIntent for `pay`, asked until Stripe's list answers: (True, it or None
        when Stripe made none). (False, None) if the payment stopped being open, or got its
        PaymentIntent, meanwhile (the webhook told us): nothing is left to find out."""
        waits = tuple(self.retry_s) or RETRY_S
        tries = 0
        while True:
            now = await self.records.payment(pay.id)
            if now is None or now.status != "open" or now.payment_intent_id:
                return False, None
            try:
                return True, await self._find(pay, row)
            except StripeUnavailable as exc:
                wait_s = waits[min(tries, len(waits) - 1)]
                log.warning("auto-recharge %s: Stripe's list of PaymentIntents did not answer: %s; asking again "
                            "in %g s", pay.id, exc, wait_s)
                if tries == 0:  # said once; each later try is logged
                    self._event("billing.recharge_unknown", pay.client_id,
                                f"auto-recharge of {format_usd(pay.amount, places=2)}: could not ask Stripe what "
                                f"it did ({exc}): asking again until it answers; it stays in flight meanwhile",
                                "warning" if exc.retryable else "error")
                tries += 1
                await self.clock.sleep(wait_s)

    async def _find(self, pay: PaymentRow, row: BillingRow) -> dict | None:
        """The PaymentIntent Stripe made for `pay` (its metadata names it), or None: one list call."""
        if not row.stripe_customer_id:
            return None  # no customer to charge: Stripe refused any create (400)
        since = pay.created_us // 1_000_000 - CLOCK_SLACK_S
        intents = await self.gateway.payment_intents_of(row.stripe_customer_id, since)
        mine = [pi for pi in intents if (pi.get("metadata") or {}).get("payment_id") == pay.id]
        if len(mine) > 1:
            log.error("auto-recharge %s: Stripe holds %d PaymentIntents for it: %s", pay.id, len(mine),
                      ", ".join(str(pi.get("id")) for pi in mine))
        charged = [pi for pi in mine if pi.get("status") in CHARGED]
        return (charged or mine or [None])[0]

    async def _found(self, pay: PaymentRow, pi: dict) -> None:
        self._event("billing.recharge_found", pay.client_id,
                    f"auto-recharge of {format_usd(pay.amount, places=2)}: Stripe did make it, PaymentIntent "
                    f"{pi.get('id')} ({pi.get('status')})"
                    + ("; the webhook credits it" if pi.get("status") in CHARGED else ""))
        await self._act(pay, pi)

    async def _act(self, pay: PaymentRow, pi: dict) -> None:
        """Stripe's PaymentIntent for the recharge: recorded; a decline in it is recorded as one,
        a success waits for the webhook, which credits it."""
        await self.records.fill_payment(pay.id, payment_intent_id=pi.get("id"))
        status = pi.get("status")
        if status == "requires_action":
            await self.failed(pay, "requires_action", "the card needs the client's authentication, which an "
                                                      "off-session charge cannot ask for")
        elif status in ("requires_payment_method", "canceled"):
            error = pi.get("last_payment_error") or {}
            await self.failed(pay, "failed" if status != "canceled" else "canceled",
                              error.get("message") or f"Stripe left the payment {status}")

    async def _ask(self, pay: PaymentRow, row: BillingRow) -> dict:
        """The off-session PaymentIntent. While Stripe cannot be reached the same request (the same
        idempotency key) is asked again, the recharge still in flight, so a charge Stripe may have
        made is never followed by a second one."""
        for wait_s in self.retry_s:
            try:
                return await self._create(pay, row)
            except StripeUnavailable as exc:
                if not exc.retryable:
                    raise
                log.warning("auto-recharge %s: %s; asking again in %g s", pay.id, exc, wait_s)
                await self.clock.sleep(wait_s)
        return await self._create(pay, row)

    async def _create(self, pay: PaymentRow, row: BillingRow) -> dict:
        return await self.gateway.create_off_session_intent(
            customer=row.stripe_customer_id or "", payment_method=row.payment_method_id or "",
            amount_cents=pay.amount // NANO_PER_CENT, idempotency_key=pay.idempotency_key,
            metadata={"client_id": pay.client_id, "payment_id": pay.id, "kind": "recharge"})

    # ---------------------------------------------------------------- outcomes
    async def failed(self, pay: PaymentRow, status: str, message: str, *, payment_intent_id: str | None = None,
                     what: str | None = None) -> bool:
        """A recharge Stripe did not take. Counted once per payment, however many times it is told.
        `what` says how, in the event ("was declined" unless told)."""
        if not await self.records.update_payment(pay.id, only_from=("open",), status=status, failure=message):
            return False
        if payment_intent_id:
            await self.records.fill_payment(pay.id, payment_intent_id=payment_intent_id)
        cb = self.records.cb
        await self.records.update_billing(pay.client_id, cb.recharge_in_flight == pay.id, recharge_in_flight=None)
        await self.records.update_billing(pay.client_id, recharge_failures=cb.recharge_failures + 1)
        what = what or ("needs authentication" if status == "requires_action" else "was declined")
        self._event(f"billing.recharge_{'requires_action' if status == 'requires_action' else 'failed'}",
                    pay.client_id, f"auto-recharge of {format_usd(pay.amount, places=2)} {what}: {message}", "warning")
        row = await self.records.billing(pay.client_id)
        limit = self.settings.recharge_max_failures
        if row is not None and row.recharge_enabled and row.recharge_failures >= limit:
            reason = (f"turned off after {row.recharge_failures} failed recharges in a row (last: {message}); "
                      f"top up through POST /v1/billing/checkout with a card that works, then turn it back on "
                      f"with PUT /v1/me/billing")
            await self.records.update_billing(pay.client_id, recharge_enabled=False, recharge_disabled_reason=reason)
            self._plans.pop(pay.client_id, None)
            self._event("billing.recharge_disabled", pay.client_id, f"auto-recharge {reason}", "error")
        plan = self._plans.get(pay.client_id)
        if plan is not None:  # only now: no other attempt starts while this one is counted
            plan.busy, plan.armed = False, True  # the next request below the threshold tries again
        return True

    async def succeeded(self, pay: PaymentRow, *, new: bool = True) -> None:
        """A payment the webhook credited (a recharge, or a Checkout top-up that may have saved a new
        card): the count of failures starts again; a recharge's end re-arms the trigger.

        `new` False: the payment was credited before (Stripe's other event about it, or a late
        retry). It is news only if it is still the recharge in flight (a stop came between its
        credit and this); otherwise it must not reset a count of declines that came after it."""
        cb = self.records.cb
        ended = await self.records.update_billing(pay.client_id, cb.recharge_in_flight == pay.id,
                                                  recharge_in_flight=None)
        if not (new or ended):
            return
        await self.records.update_billing(pay.client_id, cb.recharge_failures > 0, recharge_failures=0)
        plan = self._plans.get(pay.client_id)
        if plan is not None:
            if pay.kind == "recharge":
                plan.busy, plan.armed = False, True
            self.check(pay.client_id)

    async def disable(self, client_id: str, reason: str) -> None:
        if await self.records.update_billing(client_id, self.records.cb.recharge_enabled.is_(True),
                                             recharge_enabled=False, recharge_disabled_reason=reason):
            self._plans.pop(client_id, None)
            self._event("billing.recharge_disabled", client_id, f"auto-recharge {reason}", "error")

    # ---------------------------------------------------------------- the client's settings
    async def configure(self, client_id: str, *, enabled: bool, threshold: int | None = None,
                        amount: int | None = None, monthly_cap: int | None = None,
                        keep_cap: bool = False) -> BillingRow:
        """PUT /v1/me/billing: validated here, so each refusal names the field at fault. A None
        threshold or amount (and `keep_cap`) keeps what the client set before."""
        row = await self.records.ensure_billing(client_id)
        threshold = row.recharge_threshold if threshold is None else threshold
        amount = row.recharge_amount if amount is None else amount
        monthly_cap = row.recharge_monthly_cap if keep_cap else monthly_cap
        if enabled:
            if threshold <= 0:
                raise FieldError("threshold_usd", "auto-recharge needs a threshold above zero: it recharges when "
                                                  "available credit drops below it")
            if not amount:
                raise FieldError("amount_usd", "auto-recharge needs the amount to charge")
            low, high = self.settings.checkout_min_nano, self.settings.checkout_max_nano
            if not low <= amount <= high:
                raise FieldError("amount_usd", f"must be from {format_usd(low, places=2)} to "
                                               f"{format_usd(high, places=2)}, got {format_usd(amount, places=2)}")
            if amount % NANO_PER_CENT:
                raise FieldError("amount_usd", "Stripe charges whole cents: at most 2 decimals")
            if monthly_cap is not None and monthly_cap < amount:
                raise FieldError("monthly_cap_usd", f"{format_usd(monthly_cap, places=2)} is below one recharge "
                                                    f"of {format_usd(amount, places=2)}: it could never be charged")
            if not self.gateway.configured:
                raise NotConfigured("auto-recharge needs Stripe: the operator sets [billing] stripe_secret_key")
            if not row.payment_method_id:
                raise NoSavedCard(f"auto-recharge charges a saved card and there is none yet: {SAVE_A_CARD}")
        values: dict = {"recharge_enabled": enabled, "recharge_threshold": threshold, "recharge_amount": amount,
                        "recharge_monthly_cap": monthly_cap, "recharge_disabled_reason": ""}
        if enabled and not row.recharge_enabled:
            values["recharge_failures"] = 0  # turned back on: a fresh count
        await self.records.update_billing(client_id, **values)
        row = await self.records.billing(client_id)
        assert row is not None
        if row.recharge_enabled:
            old = self._plans.get(client_id)
            self._plans[client_id] = Plan(row.recharge_threshold, row.recharge_amount,
                                          busy=row.recharge_in_flight is not None or bool(old and old.busy))
            self.check(client_id)  # already below the threshold: recharge now
        else:
            self._plans.pop(client_id, None)
        return row

    def _event(self, kind: str, client_id: str, message: str, level: str = "info") -> None:
        self.bus.publish(BillingEvent(kind=kind, subject=client_id, message=message, level=level))
