"""POST /v1/billing/checkout: a Stripe Checkout session for a top-up. The client pays on Stripe's
page; the card is saved for auto-recharge (setup_future_usage=off_session); credit arrives only
from the webhook. The Payment row is written before Stripe is asked, so every session Stripe holds
is one we know, and its idempotency key is the payment's."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from backend.billing.errors import StripeUnavailable
from backend.billing.records import BillingRecords
from backend.billing.stripe_gateway import NANO_PER_CENT, StripeGateway
from backend.clients.service import ClientDirectory
from backend.field_errors import FieldError
from backend.money import format_usd
from backend.settings import Settings

PRODUCT = "tokenmill prepaid credit"


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    payment_id: str
    url: str
    amount: int  # nano-USD
    expires_at: int  # Unix seconds, Stripe's


class Checkout:
    def __init__(self, settings: Settings, records: BillingRecords, gateway: StripeGateway,
                 clients: ClientDirectory) -> None:
        self.settings, self.records, self.gateway, self.clients = settings, records, gateway, clients

    def _urls(self) -> tuple[str, str]:
        b = self.settings.billing
        public = self.settings.router_public_url
        return (b.checkout_success_url or f"{public}/billing/done?session_id={{CHECKOUT_SESSION_ID}}",
                b.checkout_cancel_url or f"{public}/billing/cancelled")

    def check_amount(self, amount: int) -> None:
        b = self.settings.billing
        if not b.checkout_min_nano <= amount <= b.checkout_max_nano:
            raise FieldError("amount_usd", f"a top-up is from {format_usd(b.checkout_min_nano, places=2)} to "
                                           f"{format_usd(b.checkout_max_nano, places=2)}, got "
                                           f"{format_usd(amount, places=2)}")
        if amount % NANO_PER_CENT:
            raise FieldError("amount_usd", "Stripe charges whole cents: at most 2 decimals")

    async def customer(self, client_id: str) -> str:
        """The client's Stripe Customer, created once (its idempotency key is the client's id)."""
        row = await self.records.ensure_billing(client_id)
        if row.stripe_customer_id:
            return row.stripe_customer_id
        made = await self.gateway.create_customer(client_id, self.clients.client(client_id).name)
        cb = self.records.cb
        await self.records.update_billing(client_id, cb.stripe_customer_id.is_(None), stripe_customer_id=made["id"])
        row = await self.records.billing(client_id)
        assert row is not None and row.stripe_customer_id
        return row.stripe_customer_id

    async def start(self, client_id: str, amount: int) -> CheckoutStarted:
        self.check_amount(amount)
        self.gateway.require()  # NotConfigured before anything is written
        customer = await self.customer(client_id)
        payment_id = f"pay_{secrets.token_hex(12)}"
        key = f"checkout:{payment_id}"
        await self.records.insert_payment(payment_id=payment_id, client_id=client_id, kind="checkout", amount=amount,
                                          idempotency_key=key)
        metadata = {"client_id": client_id, "payment_id": payment_id}
        success, cancel = self._urls()
        params = {
            "mode": "payment", "customer": customer, "client_reference_id": client_id,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "usd", "unit_amount": amount // NANO_PER_CENT,
                "product_data": {"name": PRODUCT}}}],
            "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
            "metadata": metadata, "success_url": success, "cancel_url": cancel,
        }
        try:
            session = await self.gateway.create_checkout_session(params, key)
        except StripeUnavailable as exc:
            await self.records.update_payment(payment_id, only_from=("open",), status="canceled", failure=str(exc))
            raise
        await self.records.fill_payment(payment_id, checkout_session_id=session.get("id"))
        return CheckoutStarted(payment_id, session.get("url") or "", amount, int(session.get("expires_at") or 0))
