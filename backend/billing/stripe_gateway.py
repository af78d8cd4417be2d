"""Stripe, through the official library's StripeClient and its async HTTPX client: no call blocks
the event loop, and every call that creates something carries our idempotency key, so a retry (the
library's own after a network error, or ours after a restart) never creates it twice.

Answers come back as plain dicts (Stripe's documented shapes). The secret key lives only inside
the StripeClient: it is never logged, returned or put in an error message.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe

from backend.billing.errors import NotConfigured, StripeUnavailable
from backend.settings import BillingSettings

log = logging.getLogger(__name__)

NANO_PER_CENT = 10_000_000  # Stripe counts USD in cents; the ledger in nano-USD
TIMEOUT_S = 20.0  # one Stripe call; Stripe answers in well under a second
NETWORK_RETRIES = 2  # the library's own, with the same idempotency key


class CardDeclined(Exception):
    """Stripe refused to charge the card (HTTP 402): `code` is Stripe's (card_declined,
    authentication_required...), `message` its words for the client, `payment_intent` the
    PaymentIntent it left behind (a dict) when there is one."""

    def __init__(self, code: str, message: str, payment_intent: dict | None) -> None:
        super().__init__(message)
        self.code, self.message, self.payment_intent = code, message, payment_intent


def _plain(obj: Any) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeGateway:
    """What billing asks Stripe. Unconfigured (no secret key), every call raises NotConfigured."""

    def __init__(self, settings: BillingSettings) -> None:
        secret = settings.stripe_secret_key.get_secret_value().strip() if settings.stripe_secret_key else ""
        self._http: stripe.HTTPXClient | None = None
        self._client: stripe.StripeClient | None = None
        if secret:
            self._http = stripe.HTTPXClient(timeout=TIMEOUT_S)
            bases = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
            self._client = stripe.StripeClient(secret, base_addresses=bases, http_client=self._http,
                                               max_network_retries=NETWORK_RETRIES)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()

    def require(self) -> None:
        """Raise NotConfigured unless Stripe is configured."""
        self._v1()

    def _v1(self):
        if self._client is None:
            raise NotConfigured("Stripe is not configured on this server: the operator sets "
                                "[billing] stripe_secret_key (and stripe_webhook_secret) to take payments.")
        return self._client.v1

    async def _call(self, what: str, coro) -> dict:
        try:
            return _plain(await coro)
        except stripe.CardError as exc:
            body = exc.json_body.get("error", {}) if isinstance(exc.json_body, dict) else {}
            pi = body.get("payment_intent") if isinstance(body.get("payment_intent"), dict) else None
            raise CardDeclined(exc.code or "card_declined", exc.user_message or "the card was declined", pi) from None
        except stripe.StripeError as exc:
            # The library's message is Stripe's answer; it never carries the secret key.
            log.warning("Stripe refused or did not answer %s: %s", what, exc.user_message)
            retryable = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or \
                (exc.http_status or 0) >= 500
            raise StripeUnavailable(f"Stripe could not {what}: {exc.user_message or type(exc).__name__}",
                                    retryable=retryable) from None

    # ---------------------------------------------------------------- calls
    async def create_customer(self, client_id: str, name: str) -> dict:
        return await self._call("create the customer", self._v1().customers.create_async(
            params={"name": name, "metadata": {"client_id": client_id}},
            options={"idempotency_key": f"customer:{client_id}"}))

    async def create_checkout_session(self, params: dict, idempotency_key: str) -> dict:
        return await self._call("open a Checkout session", self._v1().checkout.sessions.create_async(
            params=params, options={"idempotency_key": idempotency_key}))

    async def create_off_session_intent(self, *, customer: str, payment_method: str, amount_cents: int,
                                        metadata: dict[str, str], idempotency_key: str) -> dict:
        """Charge a saved card now, without the client present (auto-recharge)."""
        return await self._call("charge the saved card", self._v1().payment_intents.create_async(
            params={"amount": amount_cents, "currency": "usd", "customer": customer,
                    "payment_method": payment_method, "confirm": True, "off_session": True,
                    "metadata": metadata, "description": "tokenmill auto-recharge"},
            options={"idempotency_key": idempotency_key}))

    async def payment_intent(self, pi_id: str) -> dict:
        return await self._call("read the PaymentIntent", self._v1().payment_intents.retrieve_async(pi_id))

    async def payment_intents_of(self, customer: str, created_gte: int) -> list[dict]:
        """The customer's PaymentIntents created at or after `created_gte` (Unix seconds), every page:
        how a recharge whose answer was lost (or a run after a crash) learns what Stripe did, by
        the metadata it was created with (idempotency keys expire after a day; the PaymentIntent
        does not)."""
        params: dict[str, Any] = {"customer": customer, "created": {"gte": created_gte}, "limit": 100}
        found: list[dict] = []
        while True:
            page = await self._call("list the customer's PaymentIntents",
                                    self._v1().payment_intents.list_async(params=params))
            data = list(page.get("data") or [])
            found.extend(data)
            if not page.get("has_more") or not data:
                return found
            params = {**params, "starting_after": data[-1]["id"]}

    async def charge(self, charge_id: str) -> dict:
        return await self._call("read the charge", self._v1().charges.retrieve_async(charge_id))

    async def refunds_of(self, charge_id: str) -> list[dict]:
        page = await self._call("list the charge's refunds", self._v1().refunds.list_async(
            params={"charge": charge_id, "limit": 100}))
        return list(page.get("data") or [])

    # ---------------------------------------------------------------- money out (host payouts)
    async def create_transfer(self, *, amount_cents: int, destination: str, transfer_group: str,
                              metadata: dict[str, str], idempotency_key: str) -> dict:
        """Move money from our Stripe balance to a connected account (a host's payout)."""
        return await self._call("transfer to the host's Stripe account", self._v1().transfers.create_async(
            params={"amount": amount_cents, "currency": "usd", "destination": destination,
                    "transfer_group": transfer_group, "metadata": metadata, "description": "tokenmill host payout"},
            options={"idempotency_key": idempotency_key}))

    async def transfers_in_group(self, transfer_group: str) -> list[dict]:
        """The transfers Stripe made for one payout: how a run after a crash learns what Stripe did
        (idempotency keys expire after a day; the transfer group does not)."""
        page = await self._call("list the payout's transfers", self._v1().transfers.list_async(
            params={"transfer_group": transfer_group, "limit": 10}))
        return list(page.get("data") or [])
