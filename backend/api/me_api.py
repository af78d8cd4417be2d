"""The client's self-service API, with its own API key (the /v1 authentication, the same 401s):
GET /v1/me (credit, auto-recharge, recent payments, keys without secrets), POST and DELETE
/v1/me/keys, GET /v1/usage. Thin handlers over clients/self_service.py and ledger/reports.py.

PUT /v1/me/billing (auto-recharge settings) and /v1/me/invoices live with billing and invoices;
they authenticate with `client_key` below."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import select

from backend.api.error_responses import errors
from backend.api.openai_schema import API_KEY
from backend.api.usage_range import usage_range
from backend.billing.tables import ClientBilling, Payment
from backend.clients import self_service
from backend.clients.service import ClientError, KeyInfo
from backend.field_errors import FieldError
from backend.ledger.reports import UsageRow, client_usage_by
from backend.wire.errors import ApiError
from backend.wire.me import (
    CreateMyKey,
    Me,
    MeKey,
    MePayment,
    MeRecharge,
    MyKeyCreated,
    UsageFigures,
    UsageGroup,
    UsageReport,
    usd,
)

RECENT_PAYMENTS = 10
StartDate = Annotated[str | None, QueryParameter(
    description="inclusive; YYYY-MM-DD (UTC midnight) or ISO 8601 with an offset; default: the first of the month")]
EndDate = Annotated[str | None, QueryParameter(
    description="exclusive; a bare YYYY-MM-DD includes that day; default: the end of the current UTC month")]


def client_key(connection: ASGIConnection) -> KeyInfo:
    """The calling client's key, checked as /v1 checks it: 401 missing_api_key, invalid_api_key or
    revoked_api_key otherwise."""
    key = connection.state.get("client_key")
    if key is None:
        key = connection.app.state.services.proxy.authenticate(connection.headers.get("authorization"))
        connection.state.client_key = key
    return key


def client_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """A guard: the key is checked before the body is read, as on the completion routes, so a
    caller without a valid key is told 401 whatever it sent."""
    client_key(connection)


_FIELD_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


async def _strict_key_body(request: Request) -> None:
    """A `before_request` hook (after the key guard, before Litestar decodes the body): the body
    held to CreateMyKey, each refusal naming its field in `param` (a missing or unknown field too,
    which Litestar's own decoding leaves unnamed)."""
    try:
        msgspec.json.decode(await request.body(), type=CreateMyKey, strict=True)
    except msgspec.DecodeError as exc:
        text = str(exc)
        detail, _, where = text.partition(" - at `$.")
        named = _FIELD_NAMED.search(detail)
        param = where.rstrip("`") or (named.group(1) if named else None)
        raise ApiError(400, f"{param or 'body'}: {detail}", code="invalid_value", param=param) from None


def _me_key(k: KeyInfo, calling: KeyInfo) -> MeKey:
    return MeKey(k.id, k.name, k.prefix, k.created_us, k.revoked_us, k.revoked, k.id == calling.id)


def _recharge(row) -> MeRecharge:
    if row is None:
        return MeRecharge(False, 0, usd(0), 0, usd(0), None, None, False, False, 0, "")
    cap = row.recharge_monthly_cap
    return MeRecharge(bool(row.recharge_enabled), row.recharge_threshold, usd(row.recharge_threshold),
                      row.recharge_amount, usd(row.recharge_amount), cap, None if cap is None else usd(cap),
                      row.payment_method_id is not None, row.recharge_in_flight is not None,
                      row.recharge_failures, row.recharge_disabled_reason)


async def _billing(s, client_id: str) -> tuple[MeRecharge, list[MePayment]]:
    """The client's auto-recharge settings and its last payments, in one database connection."""
    cb, p = ClientBilling.__table__, Payment.__table__
    async with s.engine.connect() as conn:
        row = (await conn.execute(select(cb).where(cb.c.client_id == client_id))).first()
        pays = (await conn.execute(
            select(p.c.id, p.c.kind, p.c.amount, p.c.status, p.c.failure, p.c.created_us)
            .where(p.c.client_id == client_id).order_by(p.c.created_us.desc(), p.c.id.desc())
            .limit(RECENT_PAYMENTS))).all()
    return _recharge(row), [MePayment(r.id, r.kind, r.amount, usd(r.amount), r.status, r.failure, r.created_us)
                            for r in pays]


def _figures(rows: list[UsageRow]) -> UsageFigures:
    charged = sum(r.charged for r in rows)
    return UsageFigures(sum(r.requests for r in rows), sum(r.failed for r in rows),
                        sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows),
                        charged, usd(charged))


def _group(s, r: UsageRow, group_by: str) -> UsageGroup:
    out = UsageGroup(r.group, r.requests, r.failed, r.prompt_tokens, r.completion_tokens, r.charged, usd(r.charged))
    if group_by == "key" and r.group is not None:
        try:
            k = s.clients.key(r.group)
        except ClientError:  # usage of a key this process does not know (none is ever deleted)
            return out
        out.key_name, out.key_prefix = k.name, k.prefix
    return out


class MeController(Controller):
    path = "/v1"
    guards = [client_guard]
    tags = ["client"]
    security = API_KEY

    @get("/me", responses=errors(401))
    async def me(self, request: Request) -> Me:
        """The calling client: its credit (balance, holds, available, owed), auto-recharge settings
        and state, its last 10 payments (declines and cards needing authentication included), and
        its keys without their secrets."""
        key = client_key(request)
        s = request.app.state.services
        client = s.clients.client(key.client_id)
        c = self_service.credit(s.ledger, client.id)
        recharge, payments = await _billing(s, client.id)
        keys = sorted(s.clients.keys(client.id), key=lambda k: (k.created_us, k.id))
        return Me(client.id, client.name, c.balance, usd(c.balance), c.holds, usd(c.holds), c.available,
                  usd(c.available), c.owed, usd(c.owed), recharge, payments, [_me_key(k, key) for k in keys])

    @post("/me/keys", status_code=201, before_request=_strict_key_body, responses=errors(400, 401, 409, 413))
    async def create_key(self, request: Request, data: JSONBody[CreateMyKey]) -> MyKeyCreated:
        """A new API key for the calling client: its secret is in this answer and never again."""
        key = client_key(request)
        s = request.app.state.services
        try:
            new, secret = await self_service.issue_own_key(s.clients, key.client_id, data.name)
        except self_service.KeyRefused as exc:
            raise ApiError(409, str(exc), code="too_many_keys") from None
        return MyKeyCreated(_me_key(new, key), secret)

    @delete("/me/keys/{key_id:str}", status_code=200, responses=errors(400, 401, 404, 409))
    async def revoke_key(self, request: Request, key_id: FromPath[str]) -> MeKey:
        """Revoke one of the calling client's keys at once: the next request with it gets 401
        revoked_api_key. The key making this call may be revoked too, but never the client's last
        active key (409 last_active_key: create another first). Another client's key is 404, as a
        key that does not exist."""
        key = client_key(request)
        s = request.app.state.services
        try:
            revoked = await self_service.revoke_own_key(s.clients, key.client_id, key_id)
        except self_service.KeyRefused as exc:
            raise ApiError(409, str(exc), code="last_active_key") from None
        except ClientError:
            raise ApiError(404, f"No API key {key_id!r}.", code="key_not_found", param="key_id") from None
        return _me_key(revoked, key)

    @get("/usage", responses=errors(400, 401, 429))
    async def usage(self, request: Request, start_date: StartDate = None, end_date: EndDate = None,
                    group_by: FromQuery[Literal["model", "day", "key"]] = "model") -> UsageReport:
        """The calling client's usage between start_date (inclusive) and end_date, per model, UTC
        day or API key, with totals. Dates are ISO 8601, UTC: YYYY-MM-DD, or a timestamp with its
        offset (2026-11-01T12:00:00+01:00). A timestamp end is exclusive; a bare end date includes
        that day. Default: the current UTC month. At most 366 days."""
        key = client_key(request)
        s = request.app.state.services
        span = usage_range(start_date, end_date, s.clock.now())
        # A report scans up to a year of usage events: it spends the key's request budget, as a completion does.
        wait = s.proxy.limiter.allow(key.id)
        if wait:
            after = math.ceil(wait)
            raise ApiError(429, f"Rate limit reached for this key; retry in {after} s.", code="rate_limited",
                           headers={"Retry-After": str(after)})
        try:
            rows = await client_usage_by(s.engine, key.client_id, group_by, span.start_us, span.end_us)
        except FieldError as exc:
            raise ApiError(400, str(exc), code="invalid_value", param=exc.field) from None
        return UsageReport(group_by, span.start.isoformat(), span.end.isoformat(), span.start_us, span.end_us,
                           [_group(s, r, group_by) for r in rows], _figures(rows))
