"""The client's billing API: Stripe top-ups (POST /v1/billing/checkout), auto-recharge settings
(GET and PUT /v1/me/billing), Stripe's webhook (POST /v1/billing/webhook: no API key, Stripe's
signature instead) and the pages Checkout sends the client back to. Thin handlers over
backend/billing/."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import JSONBody

from backend.api.error_responses import errors
from backend.api.me_api import client_guard, client_key
from backend.api.openai_schema import API_KEY
from backend.billing.errors import BadSignature, NoSavedCard, NotConfigured, StripeUnavailable
from backend.billing.records import BillingRow
from backend.billing.service import Billing
from backend.billing.webhook import BadEvent
from backend.field_errors import FieldError
from backend.ledger.errors import LedgerError
from backend.money import MoneyError, format_usd, parse_usd
from backend.wire.billing import CheckoutIn, CheckoutOut, RechargeIn, RechargeOut, WebhookOut
from backend.wire.errors import ApiError

_FIELD_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")
_T = TypeVar("_T")


def _billing(request: Request) -> Billing:
    return request.app.state.services.billing


def _strict(body: bytes, kind: type[_T]) -> _T:
    """The body held to its declared types (Litestar's own decoding is lenient), each refusal
    naming its field in `param`."""
    try:
        return msgspec.json.decode(body, type=kind, strict=True)
    except msgspec.DecodeError as exc:
        detail, _, where = str(exc).partition(" - at `$.")
        named = _FIELD_NAMED.search(detail)
        param = where.rstrip("`") or (named.group(1) if named else None)
        raise ApiError(400, f"{param or 'body'}: {detail}", code="invalid_value", param=param) from None


def _held_to(kind: type):
    """A `before_request` hook (after the key guard, before Litestar's own lenient decoding, which
    leaves a missing or unknown field unnamed): the body held to `kind`."""

    async def hook(request: Request) -> None:
        _strict(await request.body(), kind)

    return hook


def _usd(text: str | None, field: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_usd(text, what=field)
    except MoneyError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param=field) from None


def refused(exc: Exception) -> ApiError:
    """Billing's refusal as the client reads it, its status chosen by the error's type."""
    if isinstance(exc, FieldError):
        return ApiError(400, str(exc), code="invalid_value", param=exc.field)
    if isinstance(exc, NotConfigured):
        return ApiError(503, str(exc), code="billing_not_configured")
    if isinstance(exc, NoSavedCard):
        return ApiError(409, str(exc), code="no_saved_card", param="auto_recharge")
    if isinstance(exc, BadEvent):
        return ApiError(400, str(exc), code="invalid_event")
    if isinstance(exc, BadSignature):
        return ApiError(400, str(exc), code="invalid_signature")
    if isinstance(exc, StripeUnavailable):
        return ApiError(502, f"{exc}; retry shortly", code="stripe_unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, LedgerError):
        return ApiError(503, f"the ledger could not record it: {exc}; retry shortly", code="ledger_unavailable",
                        headers={"Retry-After": "1"})
    raise exc


_REFUSALS = (FieldError, NotConfigured, NoSavedCard, BadSignature, StripeUnavailable, LedgerError)


def _recharge_out(row: BillingRow) -> RechargeOut:
    cap = row.recharge_monthly_cap
    return RechargeOut(row.client_id, row.recharge_enabled, row.recharge_threshold,
                       format_usd(row.recharge_threshold, places=2), row.recharge_amount,
                       format_usd(row.recharge_amount, places=2), cap,
                       None if cap is None else format_usd(cap, places=2), bool(row.payment_method_id),
                       row.recharge_failures, row.recharge_disabled_reason, row.recharge_in_flight)


class BillingController(Controller):
    path = "/v1"
    tags = ["billing"]

    @post("/billing/checkout", status_code=201, guards=[client_guard], security=API_KEY,
          before_request=_held_to(CheckoutIn), responses=errors(400, 401, 413, 502, 503))
    async def checkout(self, request: Request, data: JSONBody[CheckoutIn]) -> CheckoutOut:
        """Top up prepaid credit through Stripe Checkout: returns the page to send the client to.
        The card is saved for auto-recharge; the credit arrives when Stripe confirms the payment
        (its webhook), usually seconds after the client paid."""
        key = client_key(request)
        body = _strict(await request.body(), CheckoutIn)
        amount = _usd(body.amount_usd, "amount_usd")
        assert amount is not None
        try:
            started = await _billing(request).checkout.start(key.client_id, amount)
        except _REFUSALS as exc:
            raise refused(exc) from None
        return CheckoutOut(started.payment_id, started.url, started.amount, format_usd(started.amount, places=2),
                           started.expires_at)

    @get("/me/billing", guards=[client_guard], security=API_KEY, responses=errors(401))
    async def recharge_settings(self, request: Request) -> RechargeOut:
        """This client's auto-recharge settings and state."""
        row = await _billing(request).records.ensure_billing(client_key(request).client_id)
        return _recharge_out(row)

    @put("/me/billing", guards=[client_guard], security=API_KEY, before_request=_held_to(RechargeIn),
         responses=errors(400, 401, 409, 413, 503))
    async def set_recharge(self, request: Request, data: JSONBody[RechargeIn]) -> RechargeOut:
        """Auto-recharge: when available credit (balance minus holds) drops below `threshold_usd`,
        charge the card saved by a Checkout top-up `amount_usd`, at most `monthly_cap_usd` a
        calendar month (UTC). Turning it on needs a saved card (409 otherwise)."""
        key = client_key(request)
        body = _strict(await request.body(), RechargeIn)
        cap = body.monthly_cap_usd
        try:
            row = await _billing(request).recharge.configure(
                key.client_id, enabled=body.auto_recharge, threshold=_usd(body.threshold_usd, "threshold_usd"),
                amount=_usd(body.amount_usd, "amount_usd"),
                monthly_cap=None if cap is msgspec.UNSET else _usd(cap, "monthly_cap_usd"),
                keep_cap=cap is msgspec.UNSET)
        except _REFUSALS as exc:
            raise refused(exc) from None
        return _recharge_out(row)

    @post("/billing/webhook", status_code=200, responses=errors(400, 413, 502, 503))
    async def webhook(self, request: Request) -> WebhookOut:
        """Stripe's webhook (no API key: Stripe-Signature, verified with `[billing]
        stripe_webhook_secret`). Point an endpoint in Stripe's dashboard here with the events
        checkout.session.completed, checkout.session.expired, checkout.session.async_payment_succeeded,
        checkout.session.async_payment_failed, payment_intent.succeeded, payment_intent.payment_failed,
        payment_intent.requires_action, payment_intent.canceled, charge.refunded and
        charge.dispute.created. A bad signature or an old timestamp is 400 and nothing is done."""
        try:
            event_id, outcome, replay = await _billing(request).webhook.handle(
                await request.body(), request.headers.get("stripe-signature"))
        except _REFUSALS as exc:
            raise refused(exc) from None
        return WebhookOut(True, event_id, outcome, replay)


_PAGE = "<!doctype html><meta charset=utf-8><title>tokenmill</title><p>{}</p>"


@get("/billing/done", include_in_schema=False)
async def checkout_done() -> Response:
    """Where Checkout sends the client after paying."""
    return Response(_PAGE.format("Payment received. Your credit arrives as soon as Stripe confirms it, "
                                 "usually within seconds: GET /v1/me shows it."), media_type="text/html")


@get("/billing/cancelled", include_in_schema=False)
async def checkout_cancelled() -> Response:
    """Where Checkout sends a client who cancels."""
    return Response(_PAGE.format("Payment cancelled: nothing was charged."), media_type="text/html")


ROUTES = [BillingController, checkout_done, checkout_cancelled]
