"""The admin API (/admin): what the console is built on. Thin handlers over the services."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import ServerSentEvent

from backend import __version__
from backend.api.error_responses import ADMIN, ADMIN_BODY, ADMIN_ID, errors
from backend.api.event_stream import event_stream
from backend.clients.service import ClientError, ClientInfo, KeyInfo
from backend.field_errors import FieldError, Taken
from backend.fleet.registry import FleetError, HostState
from backend.ledger.errors import (
    BalanceLimit,
    IdempotencyConflict,
    InvalidAmount,
    InvalidKey,
    LedgerError,
    LedgerUnavailable,
)
from backend.ledger.reports import usage_by
from backend.money import MAX_AMOUNT_NANO, MAX_PRICE_NANO, MoneyError, format_usd, parse_usd
from backend.wire.admin import (
    ClientOut,
    CreateClient,
    CreditOut,
    EnrollHost,
    EventOut,
    GrantCredit,
    HostEnrolled,
    HostOut,
    IssueKey,
    KeyIssued,
    KeyOut,
    LoopOut,
    MetricsOut,
    ModelMetricsOut,
    ModelOut,
    ReplicaOut,
    SetClientChannel,
    StatusOut,
    UptimeOut,
    UsageOut,
)
from backend.wire.errors import ApiError


def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    token = connection.app.state.services.admin_token
    auth = connection.headers.get("authorization") or ""
    given = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "The admin API needs the admin token (Authorization: Bearer tma-...).",
                       code="invalid_admin_token")


def _services(request: Request):
    return request.app.state.services


def _client_out(s, c: ClientInfo) -> ClientOut:
    acc = s.ledger.account(c.account)
    keys = s.clients.keys(c.id)
    return ClientOut(c.id, c.name, c.created_us, acc.balance, acc.available, format_usd(acc.balance),
                     len(keys), sum(not k.revoked for k in keys), c.channel)


def _key_out(k: KeyInfo) -> KeyOut:
    return KeyOut(k.id, k.client_id, k.name, k.prefix, k.created_us, k.revoked_us)


def _host_out(s, h: HostState) -> HostOut:
    heard = s.fleet.clock.monotonic() - h.last_seen if h.registered else None
    return HostOut(h.id, h.name, h.provider, s.fleet.status(h), sorted(h.replicas), h.in_flight, h.outstanding,
                   h.gpu_type, h.gpus, h.cost_per_hour, h.payout_share_bps, heard, h.agent_version, h.last_heard_us)


def _model_out(s, model_id: str) -> ModelOut:
    m = s.models.catalogue.model(model_id)
    q = s.pricer.quote(m)
    now = s.fleet.clock.monotonic()
    reps = [ReplicaOut(r.host.id, r.host.name, s.fleet.status(r.host), r.url, r.ready, r.outstanding,
                       r.ejected_until > now, r.check.passed if r.check else None, r.check.summary if r.check else "")
            for r in s.fleet.replicas(m.id)]
    u = s.proxy.uptime.of(m.id, s.clock.now_us())
    return ModelOut(m.id, m.name, s.models.enabled(m.id), m.context_length, q.prompt_per_mtok,
                    q.completion_per_mtok, format_usd(q.prompt_per_mtok), format_usd(q.completion_per_mtok), reps,
                    UptimeOut(u.requests, u.failures, u.window_s, u.min_requests, u.ratio))


def _usd(text: str, what: str, max_nano: int = MAX_AMOUNT_NANO) -> int:
    try:
        return parse_usd(text, what=what, max_nano=max_nano)
    except MoneyError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param=what) from None


def _field_refused(exc: FieldError, **api_names: str) -> ApiError:
    """A service's refusal of one field: 409 for an id already taken, else 400; `param` is the
    field's name in the API (`api_names` maps the service's name where the two differ)."""
    param = api_names.get(exc.field, exc.field)
    if isinstance(exc, Taken):
        return ApiError(409, str(exc), code="id_taken", param=param)
    return ApiError(400, str(exc), code="invalid_value", param=param)


def _credit_refused(exc: Exception) -> ApiError:
    """A grant the ledger refused, its status chosen by the error's type (never by its text)."""
    if isinstance(exc, FieldError):
        return _field_refused(exc)
    if isinstance(exc, IdempotencyConflict):
        return ApiError(409, str(exc), code="idempotency_key_reused", param="idempotency_key")
    if isinstance(exc, BalanceLimit | InvalidAmount):
        return ApiError(400, f"amount_usd: {exc}", code="invalid_value", param="amount_usd")
    if isinstance(exc, LedgerUnavailable):
        return ApiError(503, f"{exc}; retry shortly", code="ledger_unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, InvalidKey):
        return ApiError(400, f"idempotency_key: {exc}", code="invalid_value", param="idempotency_key")
    return ApiError(400, str(exc), code="credit_refused")


# Query parameters' limits, stated in the schema and enforced by Litestar (400 naming the parameter).
RateWindow = Annotated[int, QueryParameter(ge=60, le=3600, description="seconds the rates are taken over")]
TimeUs = Annotated[int | None, QueryParameter(ge=0, le=4_102_444_800_000_000,
                                              description="µs since the epoch, UTC, before 2100")]


def _client(s, client_id: str) -> ClientInfo:
    try:
        return s.clients.client(client_id)
    except ClientError as exc:
        raise ApiError(404, str(exc), code="client_not_found") from None


def _host(s, host_id: str) -> HostState:
    try:
        return s.fleet.host(host_id)
    except FleetError as exc:
        raise ApiError(404, str(exc), code="host_not_found") from None


class AdminController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["admin"]
    security = [{"admin_token": []}]

    @get("/status", responses=errors(*ADMIN))
    async def status(self, request: Request) -> StatusOut:
        """What this backend is: version, whether it runs the simulated local fleet, hosts up."""
        s = _services(request)
        hosts = [h for h in s.fleet.hosts() if h.state != "removed"]
        return StatusOut(__version__, s.simulated, s.started_us, sum(s.fleet.is_up(h) for h in hosts), len(hosts))

    @get("/loops", responses=errors(*ADMIN))
    async def loops(self, request: Request) -> list[LoopOut]:
        """Every background loop the supervisor runs, in start order: its state, last and next run,
        how often it crashed and was restarted, and its last error."""
        return [LoopOut(i.name, i.kind, i.every, list(i.after), i.state, i.runs, i.restarts, i.last_run_us,
                        i.next_run_us, i.last_error, i.last_error_us)
                for i in _services(request).supervisor.loops()]

    # ------------------------------------------------------------ clients and keys
    @get("/clients", responses=errors(*ADMIN))
    async def list_clients(self, request: Request) -> list[ClientOut]:
        s = _services(request)
        return [_client_out(s, c) for c in s.clients.clients()]

    @post("/clients", status_code=201, responses=errors(*ADMIN_BODY, 409))
    async def create_client(self, request: Request, data: JSONBody[CreateClient]) -> ClientOut:
        s = _services(request)
        try:
            c = await s.clients.create_client(data.name, data.id)
            if data.channel != "direct":
                c = await s.clients.set_channel(c.id, data.channel)
        except FieldError as exc:
            raise _field_refused(exc) from None
        return _client_out(s, c)

    @post("/clients/{client_id:str}/channel", status_code=200, responses=errors(*ADMIN_BODY, 404))
    async def set_channel(self, request: Request, client_id: FromPath[str],
                          data: JSONBody[SetClientChannel]) -> ClientOut:
        """How the client's requests reach us: "openrouter" (OpenRouter calls with its keys: each
        charge from then on owes OpenRouter [openrouter] fee_pct of it) or "direct"."""
        s = _services(request)
        try:
            c = await s.clients.set_channel(_client(s, client_id).id, data.channel)
        except FieldError as exc:
            raise _field_refused(exc) from None
        return _client_out(s, c)

    @post("/clients/{client_id:str}/credit", status_code=200, responses=errors(*ADMIN_BODY, 404, 409, 503))
    async def grant_credit(self, request: Request, client_id: FromPath[str], data: JSONBody[GrantCredit]) -> CreditOut:
        s = _services(request)
        c = _client(s, client_id)
        amount = _usd(data.amount_usd, "amount_usd")
        try:
            r = await s.clients.grant_credit(c.id, amount, idempotency_key=data.idempotency_key, source=data.source,
                                             note=data.note)
        except (ValueError, LedgerError) as exc:
            raise _credit_refused(exc) from None
        acc = s.ledger.account(c.account)
        return CreditOut(c.id, r.key, amount, r.replayed, acc.balance, format_usd(acc.balance))

    @get("/clients/{client_id:str}/keys", responses=errors(*ADMIN_ID))
    async def list_keys(self, request: Request, client_id: FromPath[str]) -> list[KeyOut]:
        s = _services(request)
        return [_key_out(k) for k in s.clients.keys(_client(s, client_id).id)]

    @post("/clients/{client_id:str}/keys", status_code=201, responses=errors(*ADMIN_BODY, 404))
    async def issue_key(self, request: Request, client_id: FromPath[str], data: JSONBody[IssueKey]) -> KeyIssued:
        s = _services(request)
        key, secret = await s.clients.issue_key(_client(s, client_id).id, data.name)
        return KeyIssued(_key_out(key), secret)

    @post("/keys/{key_id:str}/revoke", status_code=200, responses=errors(*ADMIN_ID))
    async def revoke_key(self, request: Request, key_id: FromPath[str]) -> KeyOut:
        s = _services(request)
        try:
            key = await s.clients.revoke_key(key_id)
        except ClientError as exc:
            raise ApiError(404, str(exc), code="key_not_found") from None
        return _key_out(key)

    # ------------------------------------------------------------ models
    @get("/models", responses=errors(*ADMIN))
    async def list_models(self, request: Request) -> list[ModelOut]:
        s = _services(request)
        return [_model_out(s, m.id) for m in s.models.catalogue.models]

    @post("/models/{model_id:str}/enable", status_code=200, responses=errors(*ADMIN_ID))
    async def enable_model(self, request: Request, model_id: FromPath[str]) -> ModelOut:
        return await self._toggle(request, model_id, True)

    @post("/models/{model_id:str}/disable", status_code=200, responses=errors(*ADMIN_ID))
    async def disable_model(self, request: Request, model_id: FromPath[str]) -> ModelOut:
        return await self._toggle(request, model_id, False)

    async def _toggle(self, request: Request, model_id: str, enabled: bool) -> ModelOut:
        s = _services(request)
        try:
            await s.models.set_enabled(model_id, enabled)
        except KeyError as exc:
            raise ApiError(404, str(exc).strip("'\""), code="model_not_found") from None
        return _model_out(s, model_id)

    @get("/models/{model_id:str}/metrics", responses=errors(*ADMIN, 400, 404))
    async def model_metrics(self, request: Request, model_id: FromPath[str],
                            rate_window_s: RateWindow = 600) -> ModelMetricsOut:
        """One model's rates over the last rate_window_s seconds and its last hour per minute."""
        s = _services(request)
        if model_id not in {m.id for m in s.models.catalogue.models}:
            raise ApiError(404, f"no model {model_id!r} in the catalogue", code="model_not_found")
        return await s.metrics.model(model_id, s.clock.now_us(), rate_window_s)

    # ------------------------------------------------------------ hosts
    @get("/hosts", responses=errors(*ADMIN))
    async def list_hosts(self, request: Request) -> list[HostOut]:
        s = _services(request)
        return [_host_out(s, h) for h in s.fleet.hosts()]

    @post("/hosts", status_code=201, responses=errors(*ADMIN_BODY, 409))
    async def enroll_host(self, request: Request, data: JSONBody[EnrollHost]) -> HostEnrolled:
        s = _services(request)
        try:
            host, token = await s.fleet.enroll(
                data.name, provider=data.provider, payout_share_bps=data.payout_share_bps,
                cost_per_hour=_usd(data.cost_per_hour_usd, "cost_per_hour_usd", MAX_PRICE_NANO), host_id=data.id)
        except FieldError as exc:
            raise _field_refused(exc, cost_per_hour="cost_per_hour_usd") from None
        return HostEnrolled(_host_out(s, host), token)

    @post("/hosts/{host_id:str}/drain", status_code=200, responses=errors(*ADMIN_ID, 409))
    async def drain_host(self, request: Request, host_id: FromPath[str]) -> HostOut:
        return await self._host_action(request, host_id, "drain")

    @post("/hosts/{host_id:str}/resume", status_code=200, responses=errors(*ADMIN_ID, 409))
    async def resume_host(self, request: Request, host_id: FromPath[str]) -> HostOut:
        return await self._host_action(request, host_id, "resume")

    @post("/hosts/{host_id:str}/remove", status_code=200, responses=errors(*ADMIN_ID, 409))
    async def remove_host(self, request: Request, host_id: FromPath[str]) -> HostOut:
        return await self._host_action(request, host_id, "remove")

    async def _host_action(self, request: Request, host_id: str, action: str) -> HostOut:
        s = _services(request)
        host = _host(s, host_id)
        try:
            await getattr(s.fleet, action)(host)
        except FleetError as exc:
            raise ApiError(409, str(exc), code="host_removed") from None
        return _host_out(s, host)

    # ------------------------------------------------------------ usage and events
    @get("/usage", responses=errors(*ADMIN, 400))
    async def usage(self, request: Request, group_by: FromQuery[Literal["client", "model", "host"]] = "model",
                    since_us: TimeUs = None, until_us: TimeUs = None) -> list[UsageOut]:
        """Usage per client, model or host between since_us and until_us (µs since the epoch, UTC;
        default: the last 24 hours)."""
        s = _services(request)
        until = until_us or s.clock.now_us() + 1
        since = since_us if since_us is not None else until - 86_400_000_000
        if until <= since:
            raise ApiError(400, "until_us: must be after since_us", code="invalid_value", param="until_us")
        try:
            rows = await usage_by(s.engine, group_by, since, until)
        except FieldError as exc:
            raise _field_refused(exc) from None
        return [UsageOut(r.group, r.requests, r.failed, r.prompt_tokens, r.completion_tokens, r.charged,
                         r.host_share, r.fee) for r in rows]

    @get("/metrics", responses=errors(*ADMIN, 400))
    async def metrics(self, request: Request, rate_window_s: RateWindow = 600) -> MetricsOut:
        """The last hour and today (UTC): money, traffic, latency; the last hour per minute; and
        each catalogue model's rates over the last rate_window_s seconds (default 10 minutes)."""
        s = _services(request)
        return await s.metrics.overview(s.clock.now_us(), [m.id for m in s.models.catalogue.models], rate_window_s)

    @get("/events", responses=errors(*ADMIN, 400))
    async def events(self, request: Request, after: Annotated[int, QueryParameter(ge=0)] = 0,
                     limit: Annotated[int, QueryParameter(ge=1, le=2000)] = 500) -> list[EventOut]:
        """Events after sequence number `after`, oldest first: at most `limit`, the newest ones (the
        backend keeps its last 2,000)."""
        return [EventOut(e.seq, e.ts_us, e.kind, e.subject, e.message, e.level)
                for e in _services(request).events.since(after, limit)]

    @get("/events/stream", media_type="text/event-stream", responses=errors(*ADMIN, 400),
         response_description="Server-Sent Events, each `data:` an EventOut (JSON) or a missed count.")
    async def event_stream(self, request: Request,
                           after: Annotated[int, QueryParameter(ge=0)] = 0) -> ServerSentEvent:
        """Server-Sent Events: the kept events after sequence number `after`, then each new one as it
        happens (`event: event`, `id:` its seq, `data:` an EventOut). `event: missed` with
        `data: {"missed": n}` counts events this reader lost (it fell behind, or they left the ring).
        The stream ends after the server's `events_stream_s`; reconnect with `after` = the last id."""
        s = _services(request)
        return ServerSentEvent(event_stream(s.bus, s.events, s.clock, after, s.settings.events_stream_s),
                               headers={"Cache-Control": "no-cache"})
