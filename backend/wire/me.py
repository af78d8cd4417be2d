"""Shapes of the client's self-service API (GET /v1/me, /v1/me/keys, GET /v1/usage) and of the public
pricing sheet (GET /pricing). Money is integer nano-USD in `*_nano` fields with the exact amount in
USD beside it as a decimal string (`*_usd`, no sign or separators, at least two decimals, never
rounded); time is µs since the epoch, UTC (`*_us`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from backend.money import NANO_PER_USD
from backend.wire.licences import BaseLicenceOut


def usd(nano: int) -> str:
    """Nano-USD as an exact decimal string of USD: 10_000_000_000 -> "10.00", 140_000 -> "0.00014"."""
    text = format(Decimal(nano) / NANO_PER_USD, "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


# ---------------------------------------------------------------- GET /v1/me
class MeRecharge(msgspec.Struct):
    """Auto-recharge as the client set it (PUT /v1/me/billing), and what happened to it. Defaults
    (off, zero) when the client never set it."""

    enabled: bool
    threshold_nano: int
    threshold_usd: str
    amount_nano: int
    amount_usd: str
    monthly_cap_nano: int | None  # None: no monthly cap
    monthly_cap_usd: str | None
    card_saved: bool  # a card saved by a Checkout top-up: what a recharge charges
    in_flight: bool  # a recharge Stripe is working on now
    failures_in_a_row: int
    disabled_reason: str  # why tokenmill turned it off (failures in a row...); "" otherwise


class MePayment(msgspec.Struct):
    """A Stripe payment: a Checkout top-up or an auto-recharge. `failure` is Stripe's word on a
    decline or a card that needs authentication (status failed or requires_action)."""

    id: str
    kind: Literal["checkout", "recharge"]
    amount_nano: int
    amount_usd: str
    status: Literal["open", "succeeded", "failed", "requires_action", "canceled"]
    failure: str
    created_us: int


class MeKey(msgspec.Struct):
    """An API key without its secret: the prefix is what the client sees of it."""

    id: str
    name: str
    prefix: str
    created_us: int
    revoked_us: int | None
    revoked: bool
    calling: bool  # the key this request was made with


class Me(msgspec.Struct):
    client_id: str
    name: str
    balance_nano: int  # posted prepaid credit
    balance_usd: str
    holds_nano: int  # held for requests in flight
    holds_usd: str
    available_nano: int  # balance minus holds: what new requests may spend
    available_usd: str
    owed_nano: int  # owed to us: a refund or dispute the credit could not cover
    owed_usd: str
    auto_recharge: MeRecharge
    payments: list[MePayment]  # the last 10, newest first
    keys: list[MeKey]  # oldest first


# ---------------------------------------------------------------- /v1/me/keys
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S",
                                      description="what the key is for, up to 100 characters")]


class CreateMyKey(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName


class MyKeyCreated(msgspec.Struct):
    key: MeKey
    secret: str  # shown once, never again


# ---------------------------------------------------------------- GET /v1/usage
class UsageFigures(msgspec.Struct):
    requests: int  # requests, a failed one included
    failed: int  # failed requests (never charged)
    prompt_tokens: int
    completion_tokens: int
    charged_nano: int
    charged_usd: str


class UsageGroup(msgspec.Struct):
    """One model, UTC day (YYYY-MM-DD) or API key's figures. For a key: `group` is its id (None:
    usage recorded without a key), with its name and prefix."""

    group: str | None
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    charged_nano: int
    charged_usd: str
    key_name: str | None = None
    key_prefix: str | None = None


class UsageReport(msgspec.Struct):
    group_by: Literal["model", "day", "key"]
    start: str  # ISO 8601, UTC, inclusive
    end: str  # ISO 8601, UTC, exclusive
    start_us: int
    end_us: int
    data: list[UsageGroup]
    total: UsageFigures


# ---------------------------------------------------------------- GET /pricing
class SheetLicence(msgspec.Struct):
    name: str
    url: str
    version: str  # the text a client acknowledges; a new version needs a new acknowledgement
    commercial_use: Literal["allowed", "restricted", "forbidden"]
    restrictions: str  # in plain words; "" if none
    attribution: str  # what must accompany the output or product; "" if none
    notice: str  # the short mark shown with the model ("Built with Llama"); "" if none
    base: BaseLicenceOut | None  # fine-tunes: the base model's licence, which binds too
    # Whether a client must accept it (POST /v1/me/licences/{model}) before its first request:
    # the catalogue's word unless the operator said otherwise.
    requires_acceptance: bool


class SheetModel(msgspec.Struct):
    id: str  # the API's `model`
    name: str
    hugging_face_id: str
    # The price a request made now is quoted (what /v1/models says per token), per million tokens.
    prompt_per_mtok_nano: int
    prompt_per_mtok_usd: str
    completion_per_mtok_nano: int
    completion_per_mtok_usd: str
    context_length: int
    max_output_tokens: int
    serving: bool  # a host serves it now (listed in /v1/models)
    licence: SheetLicence


class PricingSheet(msgspec.Struct):
    currency: Literal["USD"]
    unit: Literal["1M tokens"]
    as_of_us: int  # prices move with load: this is when they were read
    models: list[SheetModel]
