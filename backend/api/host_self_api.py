"""A host's own figures, with its host token: GET /hosts/{id}/earnings?days=N and GET /hosts/{id}/market
(`tokenmill-host earnings` and `tokenmill-host models`). A host sees only its own: another host's id
is 403 (whether or not that host exists), no token or an unknown one 401.

Thin: the figures are backend/metrics/host_earnings.py's and host_market.py's; this file checks the
caller, reads the prices (pricing sits above metrics) and shapes the answer (hostkit/protocol.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter

from backend.api.error_responses import errors
from backend.fleet.registry import HostState
from backend.ledger.reports import usage_by
from backend.metrics.host_earnings import MAX_DAYS, host_earnings
from backend.metrics.host_market import Market, host_market
from backend.metrics.report import DAY_US
from backend.wire.errors import ApiError
from backend.wire.me import usd
from hostkit import protocol

_enc = msgspec.json.Encoder().encode
_TOKEN = [{"host_token": []}]


def _own_host(request: Request, host_id: str) -> HostState:
    fleet = request.app.state.services.fleet
    auth = request.headers.get("authorization") or ""
    host = fleet.authenticate(auth[7:].strip()) if auth.startswith("Bearer ") else None
    if host is None:
        raise ApiError(401, "Unknown or removed host token.", code="invalid_host_token")
    if host.id != host_id:
        raise ApiError(403, f"This host token is host {host.id}'s: a host sees only its own figures, "
                            f"not {host_id!r}'s.", code="not_your_host", param="host_id")
    return host


def _json(obj: object) -> Response:
    return Response(content=_enc(obj), media_type="application/json")


def _replies(ok: type, *statuses: int) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(ok, description="Request fulfilled", generate_examples=False), **errors(*statuses)}


@get("/hosts/{host_id:str}/earnings", tags=["hosts"], security=_TOKEN,
     responses=_replies(protocol.HostEarnings, 400, 401, 403))
async def earnings(request: Request, host_id: FromPath[str],
                   days: Annotated[int, QueryParameter(ge=1, le=MAX_DAYS, description="UTC days ending today")] = 7,
                   ) -> Response:
    """What this host earned (today, this month, the last `days` days per model and day), what it is
    owed and what was paid out to it."""
    host = _own_host(request, host_id)
    services = request.app.state.services
    e = await host_earnings(services.engine, services.ledger, host.id, host.payable_account,
                            services.clock.now_us(), days)
    return _json(protocol.HostEarnings(
        host_id=host.id, name=host.name, payout_share_bps=host.payout_share_bps, days=days,
        since_us=e.since_us, until_us=e.until_us, today_nano=e.today, today_usd=usd(e.today),
        month_nano=e.month, month_usd=usd(e.month), window_nano=e.window, window_usd=usd(e.window),
        owed_nano=e.owed, owed_usd=usd(e.owed), paid_nano=e.paid, paid_usd=usd(e.paid),
        per_model=[protocol.ModelEarnings(m, n, earned, usd(earned)) for m, n, earned in e.per_model()],
        per_day=[protocol.EarningsDay(r.day, r.model, r.requests, r.prompt_tokens, r.completion_tokens, r.earned,
                                      usd(r.earned)) for r in e.per_day]))


@get(
    "/hosts/{host_id:str}/market",
    tags=["hosts"],
    security=_TOKEN,
    responses=_replies(protocol.HostMarket, 400, 401, 403),
)
async def market(request: Request, host_id: FromPath[str]) -> Response:
    """Every catalogue model: whether this host's GPUs run it, its price, the fleet's demand and
    replicas, what this host would earn per hour serving it, and its licence."""
    host = _own_host(request, host_id)
    s = request.app.state.services
    catalogue = s.catalogue
    prices = {m.id: (q.prompt_per_mtok, q.completion_per_mtok)
              for m in catalogue.models for q in (s.pricer.quote(m),)}
    now = s.clock.now_us()
    m = host_market(catalogue, host, s.load, enabled=s.models.enabled, prices=prices,
                    window_s=s.settings.pricing.window_s, target_utilization=s.settings.autoscaler.target_utilization,
                    mix=await _mix_today(s.engine, now))
    return _json(_market_out(host, m))


async def _mix_today(engine, now: int) -> tuple[float, float] | None:
    """Mean prompt and completion tokens of the fleet's answered requests today; None before any."""
    rows = await usage_by(engine, "model", now - now % DAY_US, now + 1)
    answered = sum(r.requests - r.failed for r in rows)
    if answered <= 0:
        return None
    return sum(r.prompt_tokens for r in rows) / answered, sum(r.completion_tokens for r in rows) / answered


def _market_out(host: HostState, m: Market) -> protocol.HostMarket:
    models = []
    for r in m.rows:
        lic = r.entry.licence
        models.append(protocol.MarketModel(
            model=r.entry.id, name=r.entry.name, fits=not r.fit.why_not, why_not=r.fit.why_not, enabled=r.enabled,
            serving=r.serving, prompt_per_mtok_usd=usd(r.prompt_per_mtok),
            completion_per_mtok_usd=usd(r.completion_per_mtok), demand_tps=round(r.demand_tps, 3),
            utilization=None if r.utilization is None else round(r.utilization, 4), replicas=r.replicas,
            capacity_tps=None if r.fit.capacity is None else round(r.fit.capacity.full_decode_tps, 1),
            expected_per_hour_nano=r.expected_per_hour,
            expected_per_hour_usd=None if r.expected_per_hour is None else usd(r.expected_per_hour),
            licence=protocol.ModelLicence(lic.name, lic.url, lic.version, lic.commercial_use, lic.restrictions,
                                          lic.attribution),
            engine_spec=None if r.fit.spec is None else r.fit.spec.model_dump(mode="json")))
    return protocol.HostMarket(
        host_id=host.id, name=host.name, gpu_type=m.gpu_type, gpu_count=m.gpu_count,
        payout_share_bps=host.payout_share_bps, target_utilization=m.target_utilization,
        mean_prompt_tokens=round(m.mean_prompt, 1), mean_completion_tokens=round(m.mean_completion, 1),
        assumption=m.assumption, models=models)


ROUTES = [earnings, market]
