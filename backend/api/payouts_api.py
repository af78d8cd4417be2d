"""Host payouts on the API. The operator's: GET /admin/payouts, POST /admin/payouts/run, POST
/admin/payouts/{id}/mark-paid and /cancel, GET and PUT /admin/hosts/{id}/payout. The host's own, with its host
token: GET and PUT /hosts/{id}/payout (403 for another host's id). Thin handlers over
backend/billing/payouts/."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, ADMIN_BODY, ADMIN_ID, errors
from backend.api.hosts_api import _host
from backend.api.licences_api import _strict
from backend.billing.errors import NotConfigured
from backend.billing.payouts.errors import PayoutConflict, PayoutNotFound
from backend.billing.payouts.out import host_view, payout_out, run_out, status_out
from backend.billing.payouts.records import MAX_LIST
from backend.billing.payouts.service import KEEP, HostPayouts, parse_threshold
from backend.field_errors import FieldError
from backend.ledger.errors import LedgerError
from backend.wire.errors import ApiError
from backend.wire.payouts import HostPayoutOut, MarkPaid, PayoutOut, PayoutRunOut, SetPayoutSettings
from hostkit import protocol

_enc = msgspec.json.Encoder().encode


def _payouts(request: Request) -> HostPayouts:
    return request.app.state.services.payouts


def refused(exc: Exception) -> ApiError:
    """A payout refusal as the caller reads it, its status chosen by the error's type."""
    if isinstance(exc, FieldError):
        return ApiError(400, str(exc), code="invalid_value", param=exc.field)
    if isinstance(exc, PayoutNotFound):
        return ApiError(404, f"{exc}.", code="not_found")
    if isinstance(exc, PayoutConflict):
        return ApiError(409, f"{exc}.", code="payout_conflict")
    if isinstance(exc, NotConfigured):
        return ApiError(503, str(exc), code="billing_not_configured")
    if isinstance(exc, LedgerError):
        return ApiError(503, f"the ledger could not record it: {exc}; retry shortly", code="ledger_unavailable",
                        headers={"Retry-After": "1"})
    raise exc


_REFUSALS = (FieldError, PayoutNotFound, PayoutConflict, NotConfigured, LedgerError)


class PayoutsController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["payouts"]
    security = [{"admin_token": []}]

    @get("/payouts", responses=errors(400, *ADMIN))
    async def list_payouts(
        self, request: Request,
        host_id: Annotated[str | None, QueryParameter(description="Only this host's")] = None,
        payout_state: Annotated[Literal["pending", "paid", "failed", "canceled"] | None,
                                QueryParameter(name="state", description="Only payouts in this state")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIST)] = 100,
    ) -> list[PayoutOut]:
        """Host payouts, newest first."""
        p = _payouts(request)
        return [payout_out(r, p.host_name(r.host_id)) for r in await p.payouts(host_id=host_id, state=payout_state,
                                                                                limit=limit)]

    @post("/payouts/run", status_code=200, responses=errors(400, *ADMIN_ID))
    async def run(
        self, request: Request,
        host_id: Annotated[str | None, QueryParameter(description="Only this host (default: every host)")] = None,
        ignore_threshold: Annotated[bool, QueryParameter(
            description="With host_id: pay what the host is owed now, below its threshold too")] = False,
    ) -> PayoutRunOut:
        """Run the payout loop now: finish pending payouts, pay every host due. Manual payouts due
        are listed for the operator to pay and mark paid."""
        if ignore_threshold and host_id is None:
            raise ApiError(400, "ignore_threshold pays one host below its threshold: name it with host_id",
                           code="invalid_value", param="ignore_threshold")
        p = _payouts(request)
        try:
            return run_out(await p.run(host_id, ignore_threshold=ignore_threshold), p)
        except _REFUSALS as exc:
            raise refused(exc) from None

    @post("/payouts/{payout_id:str}/mark-paid", status_code=200, before_request=_strict(MarkPaid, optional=False),
          responses=errors(*ADMIN_BODY, 404, 409, 503))
    async def mark_paid(self, request: Request, payout_id: FromPath[str], data: JSONBody[MarkPaid]) -> PayoutOut:
        """Record a manual payout as paid by other means, with its reference: it is posted to the
        ledger (host payable -> payment clearing). Told again with the same reference, it answers
        the payout as it is."""
        p = _payouts(request)
        try:
            row = await p.mark_paid(payout_id, data.reference)
        except _REFUSALS as exc:
            raise refused(exc) from None
        return payout_out(row, p.host_name(row.host_id))

    @post("/payouts/{payout_id:str}/cancel", status_code=200, responses=errors(*ADMIN_ID, 409))
    async def cancel(self, request: Request, payout_id: FromPath[str]) -> PayoutOut:
        """Cancel a manual payout that is due and will not be paid by other means (after the host
        changed its destination, say): the amount stays owed, and the next run pays it to the host's
        destination. A payout being recorded as paid, or paid through Stripe, is not canceled (409)."""
        p = _payouts(request)
        try:
            row = await p.cancel(payout_id)
        except _REFUSALS as exc:
            raise refused(exc) from None
        return payout_out(row, p.host_name(row.host_id))

    @get("/hosts/{host_id:str}/payout", responses=errors(*ADMIN_ID))
    async def host_payout(self, request: Request, host_id: FromPath[str]) -> HostPayoutOut:
        """A host's payout settings, what it is owed, its next and last payouts."""
        try:
            return status_out(await _payouts(request).status(host_id))
        except _REFUSALS as exc:
            raise refused(exc) from None

    @put("/hosts/{host_id:str}/payout", status_code=200, before_request=_strict(SetPayoutSettings, optional=False),
         responses=errors(*ADMIN_BODY, 404, 503))
    async def set_host_payout(self, request: Request, host_id: FromPath[str],
                              data: JSONBody[SetPayoutSettings]) -> HostPayoutOut:
        """Set a host's threshold and destination: a Stripe Connect account, "manual" (paid by other
        means and recorded with mark-paid) or "none" (not paid)."""
        p = _payouts(request)
        try:
            await p.configure(host_id, by="operator", threshold=parse_threshold(data.threshold_usd),
                              method=KEEP if data.method is None else data.method,
                              stripe_account=KEEP if data.stripe_account is None else data.stripe_account)
            return status_out(await p.status(host_id))
        except _REFUSALS as exc:
            raise refused(exc) from None


# ---------------------------------------------------------------- the host's own
_TOKEN = [{"host_token": []}]


def host_owns_path(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """The host token's own host, and only it: checked before the body is read."""
    host = _host(connection, holder=False)  # type: ignore[arg-type]  # `tokenmill-host payout` is no agent
    if host.id != connection.path_params.get("host_id"):
        raise ApiError(403, "A host token reads and changes only its own host's payouts.", code="forbidden",
                       param="host_id")


def _json(obj: object) -> Response:
    return Response(content=_enc(obj), media_type="application/json")


def _ok(kind: type) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(kind, description="Request fulfilled", generate_examples=False)}


@get("/hosts/{host_id:str}/payout", tags=["hosts"], security=_TOKEN, guards=[host_owns_path],
     responses={**_ok(protocol.HostPayout), **errors(400, 401, 403)})
async def my_payout(request: Request, host_id: FromPath[str]) -> Response:
    """This host's payout settings, what it is owed, its next and last payouts."""
    return _json(host_view(await _payouts(request).status(host_id)))


@put("/hosts/{host_id:str}/payout", status_code=200, tags=["hosts"], security=_TOKEN, guards=[host_owns_path],
     before_request=_strict(protocol.SetHostPayout, optional=False),
     responses={**_ok(protocol.HostPayout), **errors(400, 401, 403, 413, 503)})
async def set_my_payout(request: Request, host_id: FromPath[str], data: JSONBody[protocol.SetHostPayout]) -> Response:
    """Set this host's payout threshold and its Stripe Connect account (where payouts go)."""
    p = _payouts(request)
    try:
        await p.configure(host_id, by="host", threshold=parse_threshold(data.threshold_usd),
                          stripe_account=KEEP if data.stripe_account is None else data.stripe_account)
        return _json(host_view(await p.status(host_id)))
    except _REFUSALS as exc:
        raise refused(exc) from None


ROUTES = [PayoutsController, my_payout, set_my_payout]
