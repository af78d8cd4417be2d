"""Dynamic pricing on the admin API: each model's price now and why, its history, the operator's pin
and range. Money is integer nano-USD per million tokens, with a decimal USD string beside it for people."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

PriceSource = Literal["engine", "pin", "unpin", "list", "start", "range"]


class PriceFactorOut(msgspec.Struct):
    """One factor's part in a price change: how much it moved each side (nano-USD per 1M tokens;
    negative: down), and in words."""

    name: Literal["base", "utilization", "demand", "peak", "range", "step_limit", "hysteresis"]
    detail: str
    prompt_delta_nano: int
    completion_delta_nano: int


class PriceChangeOut(msgspec.Struct):
    model: str
    at_us: int
    prompt_per_mtok_nano: int
    completion_per_mtok_nano: int
    prompt_usd: str
    completion_usd: str
    source: PriceSource
    explanation: str  # one line a person reads: "utilization 0.86 over 5 min > target 0.60: +4.8 %"
    factors: list[PriceFactorOut]


class ModelPricingOut(msgspec.Struct):
    model: str
    # Priced by the engine now: pricing is enabled and the model is not pinned.
    dynamic: bool
    pinned: bool
    prompt_per_mtok_nano: int  # what a request is quoted now (= /v1 quotes)
    completion_per_mtok_nano: int
    prompt_usd: str
    completion_usd: str
    list_prompt_per_mtok_nano: int  # the catalogue's list price
    list_completion_per_mtok_nano: int
    floor_prompt_per_mtok_nano: int  # the range the engine prices in: the operator's, else the market's
    floor_completion_per_mtok_nano: int
    ceiling_prompt_per_mtok_nano: int
    ceiling_completion_per_mtok_nano: int
    range_overridden: bool  # the operator set a floor or ceiling of its own
    trend: Literal["up", "down", "flat"]  # the last change against the one before it
    last_change: PriceChangeOut | None
    load: float | None  # the combined load the engine priced from last (None: not priced yet)
    utilization: float | None
    demand_tps: float | None
    capacity_tps: float | None
    replicas: int
    next_update_us: int | None  # when the engine prices next; None: pricing is off


class PricingOut(msgspec.Struct):
    enabled: bool
    interval_s: float
    target_utilization: float
    peak_hours: list[int]
    peak_now: bool
    models: list[ModelPricingOut]


class PriceHistoryOut(msgspec.Struct):
    model: str
    from_us: int
    to_us: int
    # The price in force at from_us (if any) first, then every change up to to_us, oldest first.
    changes: list[PriceChangeOut]


class SetModelPricing(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """PUT /admin/models/{id}/pricing. A field left out is left as it is.

    pinned true: the price stays at prompt_usd / completion_usd (each defaults to the current
    price) until unpinned; pinned false: the engine prices it again (from where it is). floor_* /
    ceiling_*: a decimal USD string per 1M tokens, or "" for the catalogue's market range again."""

    pinned: bool | UnsetType = UNSET
    prompt_usd: str | UnsetType = UNSET
    completion_usd: str | UnsetType = UNSET
    floor_prompt_usd: str | UnsetType = UNSET
    floor_completion_usd: str | UnsetType = UNSET
    ceiling_prompt_usd: str | UnsetType = UNSET
    ceiling_completion_usd: str | UnsetType = UNSET
