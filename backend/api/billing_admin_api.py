"""The operator's money on the admin API: GET /admin/billing (today's Stripe payments, refunds and
auto-recharges, this month's invoices, each client's recharge settings) and GET /admin/profit
(revenue, host shares, GPU cost and profit per model and UTC day, from the ledger alone). Thin
handlers over backend/metrics/billing_report.py and ledger_profit.py."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter

from backend.api.admin_api import TimeUs, admin_guard
from backend.api.error_responses import ADMIN, ADMIN_ID, errors
from backend.clients.service import ClientError
from backend.metrics.billing_report import DAY_US, MAX_ROWS, BillingReport
from backend.metrics.ledger_profit import profit_by_model_and_day
from backend.wire.billing_admin import BillingOut, ModelDayProfitOut, PaymentRowOut
from backend.wire.errors import ApiError

MAX_PROFIT_DAYS = 366


class BillingAdminController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["admin"]
    security = [{"admin_token": []}]

    @get("/billing", responses=errors(*ADMIN))
    async def billing(self, request: Request) -> BillingOut:
        """Today (UTC): Stripe payments credited (count and sum) and the payment rows created or
        changed today; refunds and disputes taken back (from credit, and what the client now owes);
        auto-recharges asked for, succeeded and failed (with Stripe's message). This month: the
        invoices issued. Every client: its recharge settings (null where it never set any), saved
        card, balance, available credit and what it owes."""
        s = request.app.state.services
        return await BillingReport(s.engine, s.ledger).out(
            s.clock.now_us(), ((c.id, c.name) for c in s.clients.clients()))

    @get("/billing/clients/{client_id:str}/payments", responses=errors(*ADMIN_ID))
    async def client_payments(self, request: Request, client_id: FromPath[str],
                              limit: Annotated[int, QueryParameter(ge=1, le=MAX_ROWS)] = 100) -> list[PaymentRowOut]:
        """A client's Stripe payments (top-ups and auto-recharges, any day), newest first: the
        console's drill-down from the Billing view."""
        s = request.app.state.services
        try:
            c = s.clients.client(client_id)
        except ClientError as exc:
            raise ApiError(404, str(exc), code="client_not_found") from None
        return await BillingReport(s.engine, s.ledger).client_payments(c.id, c.name, limit)

    @get("/profit", responses=errors(*ADMIN, 400))
    async def profit(self, request: Request, since_us: TimeUs = None,
                     until_us: TimeUs = None) -> list[ModelDayProfitOut]:
        """Per UTC day and model, from the ledger alone: requests and revenue (usage events), host
        shares and OpenRouter's fees, GPU cost (the `gpu_cost` transfers: rented and owned GPU time,
        split evenly among the models each host served; model null: GPU time no model used) and
        profit (revenue - host shares - GPU cost - fees). Default:
        today; at most 366 days. GPU time reaches the ledger a minute or two after it passed."""
        s = request.app.state.services
        now = s.clock.now_us()
        since = since_us if since_us is not None else now - now % DAY_US
        until = until_us if until_us is not None else now + 1
        if until <= since:
            raise ApiError(400, "until_us: must be after since_us", code="invalid_value", param="until_us")
        if until - since > MAX_PROFIT_DAYS * DAY_US:
            raise ApiError(400, f"until_us: at most {MAX_PROFIT_DAYS} days after since_us", code="invalid_value",
                           param="until_us")
        rows = await profit_by_model_and_day(s.engine, since, until)
        return [ModelDayProfitOut(r.day, r.model, r.requests, r.revenue, r.host_shares, r.gpu_cost, r.profit,
                                  r.fees) for r in rows]
