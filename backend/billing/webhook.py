"""POST /v1/billing/webhook: Stripe tells us what happened to a payment. The only place credit
arrives from Stripe.

Each delivery is verified first (the stripe library checks Stripe-Signature's HMAC; its age is read
on our Clock against `[billing] webhook_tolerance_s`), then handled once: a StripeEvent row records
its id and what it did, and a replay is answered without acting. Deliveries are handled one at a
time in this process, and every money move is a ledger transfer keyed by Stripe's ids, so two
events about one payment (checkout.session.completed and payment_intent.succeeded), or the same
event delivered twice at once, credit it once. Stripe does not promise any order: an event that
lacks what it needs (a refund of a payment whose success was not seen yet) asks Stripe for the
PaymentIntent or charge, and a stale one (a failure after the success) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import stripe

from backend.billing.credit_moves import CreditMoves
from backend.billing.errors import BadSignature, NotConfigured, StripeUnavailable
from backend.billing.recharge import AutoRecharge
from backend.billing.records import BillingRecords, PaymentRow
from backend.billing.stripe_gateway import NANO_PER_CENT, StripeGateway
from backend.money import format_usd
from backend.runtime.bus import BillingEvent, EventBus
from backend.runtime.clock import Clock
from backend.settings import BillingSettings

log = logging.getLogger(__name__)


class BadEvent(BadSignature):
    """Signed correctly, but not a Stripe event."""


def _id(value: object) -> str | None:
    """A Stripe reference: an id, or the object itself when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _signed_at(header: str) -> int:
    """The timestamp the library verified the signature with: the first item named exactly "t",
    read as the library reads it. Read any other way (spaces stripped, say), a header could carry a
    fresh "t" for the age check beside the old one an old, captured signature was made with."""
    for item in header.split(","):
        name, _, value = item.partition("=")
        if name == "t":
            return int(value)
    raise ValueError("no t=")


def _usd_cents(obj: dict, field: str) -> tuple[int | None, str | None]:
    """`obj`'s `field` in US cents: (cents, None); (None, None) when Stripe did not say; (None,
    why) when it is in another currency that Stripe did not convert from USD for us. We ask for USD,
    but a Checkout session shown in the client's currency (Stripe's Adaptive Pricing) carries its
    amounts in that currency, the USD ones under `currency_conversion`."""
    currency = str(obj.get("currency") or "usd").lower()
    amount = obj.get(field)
    if currency == "usd":
        return (amount if isinstance(amount, int) and not isinstance(amount, bool) else None), None
    conv = obj.get("currency_conversion")
    if isinstance(conv, dict) and str(conv.get("source_currency") or "").lower() == "usd" \
            and isinstance(conv.get(field), int) and not isinstance(conv.get(field), bool):
        return conv[field], None
    return None, f"Stripe reports {amount} in {currency.upper()} (the smallest unit), not US cents"


class StripeWebhook:
    def __init__(self, settings: BillingSettings, records: BillingRecords, gateway: StripeGateway, moves: CreditMoves,
                 recharge: AutoRecharge, bus: EventBus, clock: Clock) -> None:
        self.settings, self.records, self.gateway, self.moves = settings, records, gateway, moves
        self.recharge, self.bus, self.clock = recharge, bus, clock
        self._lock = asyncio.Lock()
        self._handlers: dict[str, Callable[[str, dict], Awaitable[str]]] = {
            "checkout.session.completed": self._session_paid,
            "checkout.session.async_payment_succeeded": self._session_paid,
            "checkout.session.async_payment_failed": self._session_closed,
            "checkout.session.expired": self._session_closed,
            "payment_intent.succeeded": self._intent_succeeded,
            "payment_intent.payment_failed": self._intent_failed,
            "payment_intent.requires_action": self._intent_failed,
            "payment_intent.canceled": self._intent_failed,
            "charge.refunded": self._refunded,
            "charge.dispute.created": self._disputed,
        }

    # ---------------------------------------------------------------- verification
    def verify(self, payload: bytes, signature: str | None) -> dict:
        """The event, once its signature and age are good; BadSignature says what is wrong."""
        secret = self.settings.stripe_webhook_secret.get_secret_value().strip() \
            if self.settings.stripe_webhook_secret else ""
        if not secret:
            raise NotConfigured("Stripe webhooks are not configured on this server: the operator sets "
                                "[billing] stripe_webhook_secret (whsec_...) from Stripe's dashboard.")
        try:
            # The HMAC by the library; the age below, on the services' Clock.
            stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance=None)
        except stripe.SignatureVerificationError as exc:
            raise BadSignature(f"Stripe-Signature does not verify: {exc.user_message}; nothing was done") from None
        except UnicodeDecodeError:
            raise BadSignature("the payload is not UTF-8 text; nothing was done") from None
        age = self.clock.now_us() // 1_000_000 - _signed_at(signature or "")
        tolerance = self.settings.webhook_tolerance_s
        if age > tolerance:
            raise BadSignature(f"Stripe-Signature was made {age} s ago, more than the {tolerance} s allowed "
                               f"([billing] webhook_tolerance_s): refused as a possible replay; nothing was done")
        try:
            event = json.loads(payload)
        except ValueError:
            raise BadEvent("the payload is not JSON; nothing was done") from None
        if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
                and isinstance((event.get("data") or {}).get("object"), dict)):
            raise BadEvent("the payload is not a Stripe event (id, type, data.object); nothing was done")
        return event

    # ---------------------------------------------------------------- handling
    async def handle(self, payload: bytes, signature: str | None) -> tuple[str, str, bool]:
        """Verify and act on one delivery: (event id, what it did, whether it was a replay)."""
        event = self.verify(payload, signature)
        event_id, kind = event["id"], event["type"]
        async with self._lock:
            seen = await self.records.event_seen(event_id)
            if seen is not None:
                return event_id, seen, True
            handler = self._handlers.get(kind)
            outcome = await handler(kind, event["data"]["object"]) if handler else f"ignored: not acted on ({kind})"
            created = event.get("created")
            await self.records.record_event(event_id, kind, created if isinstance(created, int) else 0, outcome)
        log.info("stripe event %s (%s): %s", event_id, kind, outcome)
        return event_id, outcome, False

    def _event(self, kind: str, pay: PaymentRow, message: str, level: str = "info") -> None:
        self.bus.publish(BillingEvent(kind=kind, subject=pay.client_id, message=message, level=level))

    async def _payment(self, *, metadata: object = None, session_id: str | None = None, pi_id: str | None = None,
                       charge_id: str | None = None) -> PaymentRow | None:
        """Our payment for Stripe's object: by the payment id we put in its metadata, else by
        Stripe's ids we recorded."""
        if isinstance(metadata, dict) and isinstance(metadata.get("payment_id"), str):
            pay = await self.records.payment(metadata["payment_id"])
            if pay is not None:
                return pay
        for finder, value in ((self.records.payment_by_session, session_id), (self.records.payment_by_intent, pi_id),
                              (self.records.payment_by_charge, charge_id)):
            if value:
                pay = await finder(value)
                if pay is not None:
                    return pay
        return None

    async def _paid(self, pay: PaymentRow, amount: int, intent: dict | None) -> str:
        """Stripe took the money: credit it (once), record it, save the card for auto-recharge."""
        new = await self.moves.credit(pay.client_id, pay.id, amount)
        await self.records.update_payment(pay.id, status="succeeded", credited=amount, failure="")
        if intent is not None:
            await self.records.fill_payment(pay.id, payment_intent_id=_id(intent.get("id")),
                                            charge_id=_id(intent.get("latest_charge")))
            card = _id(intent.get("payment_method"))
            if card:
                await self.records.ensure_billing(pay.client_id)
                await self.records.update_billing(pay.client_id, payment_method_id=card)
        await self.recharge.succeeded(pay, new=new)
        if not new:
            return f"already credited ({pay.id})"
        self._event("billing.payment_succeeded", pay,
                    f"{format_usd(amount, places=2)} {pay.kind} payment credited to {pay.client_id} ({pay.id})")
        return f"credited {format_usd(amount, places=2)} to {pay.client_id} ({pay.id})"

    async def _intent(self, pi_id: str | None) -> dict | None:
        return await self.gateway.payment_intent(pi_id) if pi_id else None

    # ---------------------------------------------------------------- checkout sessions
    async def _session_paid(self, kind: str, session: dict) -> str:
        pay = await self._payment(metadata=session.get("metadata"), session_id=_id(session.get("id")))
        if pay is None:
            return "ignored: not a tokenmill payment"
        if session.get("payment_status") != "paid":
            return f"waiting: the session is {session.get('status')} and {session.get('payment_status')}"
        pi_id = _id(session.get("payment_intent"))
        await self.records.fill_payment(pay.id, checkout_session_id=_id(session.get("id")), payment_intent_id=pi_id)
        intent = session.get("payment_intent") if isinstance(session.get("payment_intent"), dict) else None
        if intent is None and pi_id:
            # The session names its PaymentIntent but not the card it saved: Stripe has it. Without
            # an answer the credit still goes ahead; payment_intent.succeeded brings the card.
            try:
                intent = await self._intent(pi_id)
            except StripeUnavailable as exc:
                log.warning("the card of %s is saved later: %s", pay.id, exc)
        cents, foreign = _usd_cents(session, "amount_total")
        if foreign:
            return self._not_usd(pay, foreign)
        return await self._paid(pay, cents * NANO_PER_CENT if cents is not None else pay.amount, intent)

    def _not_usd(self, pay: PaymentRow, why: str) -> str:
        """A payment whose amount is not in USD: credit nothing rather than a wrong figure; the
        operator checks it in Stripe's dashboard and grants the credit by hand."""
        message = (f"payment {pay.id} of {pay.client_id} was not credited: {why}; check it in Stripe's dashboard "
                   f"and grant the credit by hand")
        self._event("billing.payment_not_credited", pay, message, "error")
        return f"not credited: {why}"

    async def _session_closed(self, kind: str, session: dict) -> str:
        pay = await self._payment(metadata=session.get("metadata"), session_id=_id(session.get("id")))
        if pay is None:
            return "ignored: not a tokenmill payment"
        status, why = ("canceled", "the Checkout session expired unpaid") if kind.endswith("expired") \
            else ("failed", "the payment did not go through")
        if not await self.records.update_payment(pay.id, only_from=("open",), status=status, failure=why):
            return f"stale: the payment is already {pay.status}"
        return f"{pay.id} {status}: {why}"

    # ---------------------------------------------------------------- payment intents
    async def _intent_succeeded(self, kind: str, pi: dict) -> str:
        pay = await self._payment(metadata=pi.get("metadata"), pi_id=_id(pi.get("id")))
        if pay is None:
            return "ignored: not a tokenmill payment"
        cents, foreign = _usd_cents(pi, "amount_received")
        if foreign and pay.kind == "checkout":
            # Shown in the client's currency: the session's own event carries the USD amount.
            return f"waiting: {foreign}; checkout.session.completed credits the USD amount"
        if foreign:
            return self._not_usd(pay, foreign)
        return await self._paid(pay, cents * NANO_PER_CENT if cents else pay.amount, pi)

    async def _intent_failed(self, kind: str, pi: dict) -> str:
        pay = await self._payment(metadata=pi.get("metadata"), pi_id=_id(pi.get("id")))
        if pay is None:
            return "ignored: not a tokenmill payment"
        if pay.status == "succeeded":
            return "stale: the payment succeeded already"
        error = pi.get("last_payment_error") or {}
        if kind.endswith("requires_action") or error.get("code") == "authentication_required":
            status, message = "requires_action", error.get("message") or "the card needs the client's authentication"
        elif kind.endswith("canceled"):
            status, message = "canceled", "the payment was canceled"
        else:
            status, message = "failed", error.get("message") or "the card was declined"
        if pay.kind == "recharge":
            changed = await self.recharge.failed(pay, status, message, payment_intent_id=_id(pi.get("id")))
            if not changed:
                return f"stale: the payment is already {pay.status}"
            return f"recharge {pay.id} {status}: {message}"
        # In Checkout the client may try another card in the same session: the payment stays open.
        await self.records.update_payment(pay.id, only_from=("open",), failure=message)
        self._event("billing.payment_failed", pay, f"a Checkout payment attempt of {pay.client_id} failed: {message}",
                    "warning")
        return f"attempt on {pay.id} failed: {message}"

    # ---------------------------------------------------------------- refunds and disputes
    async def _charged_payment(self, charge_id: str | None, pi_id: str | None) -> tuple[PaymentRow | None, dict | None]:
        """The payment a charge belongs to, credited first if its success was not seen yet."""
        pay = await self._payment(charge_id=charge_id, pi_id=pi_id)
        intent = None
        if pay is None and pi_id is None and charge_id:
            pi_id = _id((await self.gateway.charge(charge_id)).get("payment_intent"))
        if pay is None and pi_id:
            intent = await self._intent(pi_id)
            pay = await self._payment(metadata=(intent or {}).get("metadata"))
        if pay is None:
            return None, None
        await self.records.fill_payment(pay.id, charge_id=charge_id, payment_intent_id=pi_id)
        if pay.credited == 0 and pay.status != "succeeded":
            intent = intent or await self._intent(pi_id or pay.payment_intent_id)
            if intent is not None and intent.get("status") == "succeeded":
                cents, foreign = _usd_cents(intent, "amount_received")
                if foreign:
                    self._not_usd(pay, foreign)
                else:
                    await self._paid(pay, cents * NANO_PER_CENT if cents else pay.amount, intent)
        return await self.records.payment(pay.id), intent

    async def _refunded(self, kind: str, charge: dict) -> str:
        charge_id = _id(charge.get("id"))
        pay, _ = await self._charged_payment(charge_id, _id(charge.get("payment_intent")))
        if pay is None or charge_id is None:
            return "ignored: not a tokenmill payment"
        listed = charge.get("refunds")
        if isinstance(listed, dict) and isinstance(listed.get("data"), list) and not listed.get("has_more"):
            refunds = listed["data"]
        else:  # not included in the event (Stripe's API since 2022-11-15): ask for them
            refunds = await self.gateway.refunds_of(charge_id)
        taken = owed = 0
        for refund in refunds:
            if refund.get("status") not in ("succeeded", "pending") or not isinstance(refund.get("amount"), int):
                continue
            t, o = await self.moves.reverse(pay.client_id, pay.id, f"stripe:{charge_id}:{refund['id']}",
                                            refund["amount"] * NANO_PER_CENT, "stripe_refund", credited=pay.credited)
            taken, owed = taken + t, owed + o
        refunded = charge.get("amount_refunded")
        total = refunded * NANO_PER_CENT if isinstance(refunded, int) else taken + owed
        await self.records.update_payment(pay.id, refunded=max(pay.refunded, total))
        message = (f"{format_usd(taken + owed, places=2)} refunded on {pay.id}: {format_usd(taken, places=2)} from "
                   f"credit, {format_usd(owed, places=2)} owed")
        if taken + owed < total:
            message += "; the rest was disputed or refunded already, and is not taken back twice"
        self._event("billing.refunded", pay, message, "warning" if owed else "info")
        return message

    async def _disputed(self, kind: str, dispute: dict) -> str:
        charge_id = _id(dispute.get("charge"))
        pay, _ = await self._charged_payment(charge_id, _id(dispute.get("payment_intent")))
        if pay is None or charge_id is None or not isinstance(dispute.get("amount"), int):
            return "ignored: not a tokenmill payment"
        amount = dispute["amount"] * NANO_PER_CENT
        taken, owed = await self.moves.reverse(pay.client_id, pay.id, f"stripe:{charge_id}:{dispute.get('id')}",
                                               amount, "stripe_dispute", credited=pay.credited)
        await self.records.update_payment(pay.id, disputed=max(pay.disputed, amount))
        # A disputed card is not charged again without the client's word.
        await self.recharge.disable(pay.client_id, f"turned off: payment {pay.id} was disputed "
                                                   f"({dispute.get('reason') or 'no reason given'})")
        message = (f"{format_usd(amount, places=2)} disputed on {pay.id}: {format_usd(taken, places=2)} from credit, "
                   f"{format_usd(owed, places=2)} owed")
        if taken + owed < amount:
            message += (f"; {format_usd(amount - taken - owed, places=2)} not taken back from the client: it was "
                        f"refunded or disputed already (contest the dispute in Stripe's dashboard)")
        self._event("billing.disputed", pay, message, "error")
        return message
