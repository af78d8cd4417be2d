"""Live projections on the admin API (/admin/projections): a thin handler over
backend/metrics/projections.py, which is handed the models' prices now from here (the pricer sits
above metrics) and the daily profit target from the settings."""

from __future__ import annotations

from litestar import Controller, Request, get

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, errors
from backend.metrics.projections import Projections
from backend.wire.projections import ProjectionsOut


def _projections(request: Request) -> Projections:
    """One per app, kept in its state: it keeps the month's sums before today between calls."""
    state = request.app.state
    p = getattr(state, "projections", None)
    if p is None:
        s = state.services
        p = state.projections = Projections(s.metrics, s.load, s.catalogue)
    return p


class ProjectionsController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["admin"]
    security = [{"admin_token": []}]

    @get("/projections", responses=errors(*ADMIN))
    async def projections(self, request: Request) -> ProjectionsOut:
        """Today's and this month's (UTC) revenue, host payouts, GPU cost and profit so far (the
        ledger's and the GPU meter's) and projected to the period's end, with the time each
        projection rests on; progress against the daily profit target; and each served model's
        break-even utilization on its current hosts at its price now, beside its utilization now."""
        s = request.app.state.services
        quotes = (s.pricer.quote(m) for m in s.catalogue.models)
        prices = {q.model: (q.prompt_per_mtok, q.completion_per_mtok) for q in quotes}
        return await _projections(request).out(s.clock.now_us(), prices, s.settings.profit_target_daily_nano)
