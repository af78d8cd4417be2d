"""Shapes of the client's billing API: Stripe top-ups (POST /v1/billing/checkout), auto-recharge
settings (PUT /v1/me/billing) and the webhook's answer. Money sent is a decimal string of USD;
money returned is integer nano-USD with a decimal string beside it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from backend.money import MAX_AMOUNT_NANO, NANO_PER_USD

_TOP = MAX_AMOUNT_NANO // NANO_PER_USD


def _usd(what: str) -> Any:
    return Annotated[str, msgspec.Meta(pattern=r"^\$?[0-9]+(\.[0-9]+)?$", description=(
        f'{what}: a decimal string of USD such as "20.00" (at most {_TOP:,}; never a float)'))]


TopUpUsd = _usd("the top-up, within the server's minimum and maximum, whole cents")
ThresholdUsd = _usd("recharge when available credit drops below this")
RechargeUsd = _usd("charge the saved card this much each time (at least the top-up minimum)")
CapUsd = _usd("at most this much recharged a calendar month (UTC); null: no cap")


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: TopUpUsd


class CheckoutOut(msgspec.Struct):
    payment_id: str  # ours ("pay_..."): GET /v1/me lists it with its status
    url: str  # Stripe's Checkout page: send the client's browser there
    amount_nano: int
    amount_usd: str
    expires_at: int  # Unix seconds: the page stops taking payment then


class RechargeIn(msgspec.Struct, forbid_unknown_fields=True):
    """Omitted fields keep what was set before; `monthly_cap_usd: null` means no cap."""

    auto_recharge: bool
    threshold_usd: ThresholdUsd | None = None
    amount_usd: RechargeUsd | None = None
    monthly_cap_usd: CapUsd | msgspec.UnsetType | None = msgspec.UNSET


class RechargeOut(msgspec.Struct):
    client_id: str
    auto_recharge: bool
    threshold_nano: int
    threshold_usd: str
    amount_nano: int
    amount_usd: str
    monthly_cap_nano: int | None
    monthly_cap_usd: str | None
    card_saved: bool  # a Checkout top-up saved a card: auto-recharge can be turned on
    failures_in_a_row: int
    disabled_reason: str  # why tokenmill turned it off ("" when on, or off by the client)
    recharge_in_flight: str | None  # the payment id Stripe is working on


class WebhookOut(msgspec.Struct):
    received: bool
    event_id: str
    outcome: str  # what tokenmill did with it ("credited $20.00 to ...", "ignored: ...")
    replay: bool  # the event was handled before: nothing was done again
