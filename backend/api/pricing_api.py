"""The pricing part of the admin API (/admin): each model's price now and why, its history, and the
operator's pin and range. Thin handlers over the PricingEngine (backend/pricing/engine.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, ADMIN_BODY, ADMIN_ID, errors
from backend.field_errors import FieldError
from backend.pricing.engine import PricingEngine, UnknownModel
from backend.wire.errors import ApiError
from backend.wire.pricing import ModelPricingOut, PriceHistoryOut, PricingOut, SetModelPricing

DAY_US = 86_400_000_000
MAX_US = 4_102_444_800_000_000  # 2100-01-01: the admin API's bound on instants
WHEN = "µs since the epoch (UTC), or ISO 8601 (no offset: UTC)"


def _pricing(request: Request) -> PricingEngine:
    return request.app.state.services.pricing


def _not_found(exc: UnknownModel) -> ApiError:
    return ApiError(404, str(exc), code="model_not_found")


def _instant(text: str, param: str) -> int:
    """µs since the epoch, UTC, from digits or ISO 8601."""
    s = text.strip()
    if s.isdigit():
        us = int(s)
    else:
        try:
            when = dt.datetime.fromisoformat(s)
        except ValueError:
            raise ApiError(400, f"{param}: {text!r} is neither µs since the epoch nor an ISO 8601 time",
                           code="invalid_value", param=param) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        us = (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    if not 0 <= us <= MAX_US:
        raise ApiError(400, f"{param}: {text!r} is not between 1970 and 2100", code="invalid_value", param=param)
    return us


async def _strictly(request: Request) -> None:
    """Litestar decodes bodies leniently (0 or "true" for a bool): the pin is the operator's word on
    money, so its body is held to its declared types, as the schema states them."""
    try:
        msgspec.json.decode(await request.body(), type=SetModelPricing, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        detail, _, where = text.partition(" - at `$.")
        param = where.rstrip("`") or None
        raise ApiError(400, f"{param or 'body'}: {detail}", code="invalid_value", param=param) from None


class PricingController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["pricing"]
    security = [{"admin_token": []}]

    @get("/pricing", responses=errors(*ADMIN))
    async def pricing(self, request: Request) -> PricingOut:
        """Dynamic pricing's settings and every catalogue model's price now: dynamic or pinned, its
        range, trend, last change with its explanation, and the load it was priced from."""
        return _pricing(request).overview()

    @get("/models/{model_id:str}/prices", responses=errors(*ADMIN_ID))
    async def prices(self, request: Request, model_id: FromPath[str],
                     from_: Annotated[str | None, QueryParameter(name="from", description=WHEN)] = None,
                     to: Annotated[str | None, QueryParameter(description=WHEN)] = None) -> PriceHistoryOut:
        """A model's price history between `from` and `to` (default: the last 24 hours): the price
        in force at `from` first, then every change up to `to`, oldest first, each with why."""
        engine = _pricing(request)
        to_us = _instant(to, "to") if to is not None else engine.clock.now_us()
        from_us = _instant(from_, "from") if from_ is not None else max(to_us - DAY_US, 0)
        if from_us > to_us:
            raise ApiError(400, "from: must not be after to", code="invalid_value", param="from")
        try:
            changes = await engine.history(model_id, from_us, to_us)
        except UnknownModel as exc:
            raise _not_found(exc) from None
        return PriceHistoryOut(model_id, from_us, to_us, changes)

    @put("/models/{model_id:str}/pricing", status_code=200, responses=errors(*ADMIN_BODY, 404))
    async def set_pricing(self, request: Request, model_id: FromPath[str],
                          data: JSONBody[SetModelPricing]) -> ModelPricingOut:
        """Pin a model's price (`pinned`, optionally `prompt_usd` / `completion_usd`: each defaults
        to the current price), unpin it, or set its own floor and ceiling per side (USD per 1M
        tokens; "" = the catalogue's market range again). Fields left out stay as they are."""
        await _strictly(request)
        try:
            return await _pricing(request).set_pricing(model_id, data)
        except UnknownModel as exc:
            raise _not_found(exc) from None
        except FieldError as exc:
            raise ApiError(400, str(exc), code="invalid_value", param=exc.field) from None
