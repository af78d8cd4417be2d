"""The autoscaler part of the admin API (/admin): per model, desired against actual replicas, the
next decision and the last ones with their reasons; the operator's on/off, min and max per model.
Thin handlers over the Autoscaler (backend/autoscaler/service.py)."""

from __future__ import annotations

import re

import msgspec
from litestar import Controller, Request, get, put
from litestar.params import FromPath, JSONBody

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, ADMIN_BODY, errors
from backend.autoscaler.service import Autoscaler, ScalingError
from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, SetModelScaling
from backend.wire.errors import ApiError


def _autoscaler(request: Request) -> Autoscaler:
    return request.app.state.services.autoscaler


async def _strict(request: Request, data: SetModelScaling) -> SetModelScaling:
    """The body decoded strictly: Litestar's own decoding converts types (0 would be false)."""
    try:
        return msgspec.json.decode(await request.body(), type=SetModelScaling)
    except msgspec.ValidationError as exc:
        where = re.search(r"at `\$\.(\w+)`", str(exc))
        raise ApiError(400, str(exc), code="invalid_value", param=where.group(1) if where else None) from None
    except msgspec.DecodeError:
        return data  # not reached: Litestar refused a body that is not JSON already


class AutoscalerController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["autoscaler"]
    security = [{"admin_token": []}]

    @get("/autoscaler", responses=errors(*ADMIN))
    async def autoscaler(self, request: Request) -> AutoscalerOut:
        """The autoscaler's settings, spend against the budget per hour, and per model it looks after
        (served, being provisioned, or set by the operator): desired against actual replicas, the
        streaks, when the next decision is and what it would do; the latest decisions that did
        something, newest first."""
        return await _autoscaler(request).out()

    @put("/models/{model_id:str}/scaling", status_code=200, responses=errors(*ADMIN_BODY, 404))
    async def set_scaling(self, request: Request, model_id: FromPath[str],
                          data: JSONBody[SetModelScaling]) -> ModelScalingOut:
        """Turn scaling on or off for a model, or set its own min and max replicas (null: the
        [autoscaler] defaults again). Fields left out stay as they are."""
        change = await _strict(request, data)
        try:
            return await _autoscaler(request).set_scaling(model_id, change)
        except ScalingError as exc:
            raise ApiError(exc.status, exc.message, code=exc.code, param=exc.param) from None
