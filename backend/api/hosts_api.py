"""The host API: what a host agent calls (register, heartbeat, drain, resume, deregister)."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec

from backend.api.error_responses import errors
from backend.fleet.registry import AgentReplaced, Fleet, FleetError, HostState
from backend.wire.errors import ApiError
from hostkit import protocol

_enc = msgspec.json.Encoder().encode


def _fleet(request: Request) -> Fleet:
    return request.app.state.services.fleet


def _host(request: Request, *, holder: bool = True) -> HostState:
    """The caller's host; `holder`: refuse (409) an agent other than the one holding the token."""
    auth = request.headers.get("authorization") or ""
    host = _fleet(request).authenticate(auth[7:].strip()) if auth.startswith("Bearer ") else None
    if host is None:
        raise ApiError(401, "Unknown or removed host token.", code="invalid_host_token")
    if holder:
        try:
            _fleet(request).check_agent(host, _instance(request))
        except AgentReplaced as exc:
            raise _replaced(exc) from None
    return host


def _instance(request: Request) -> str | None:
    return request.headers.get(protocol.AGENT_INSTANCE_HEADER) or None


def _replaced(exc: AgentReplaced) -> ApiError:
    return ApiError(409, str(exc), code=protocol.AGENT_REPLACED)


async def _body(request: Request, kind: type):
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"Invalid {kind.__name__}: {exc}", code="invalid_value") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}", code="invalid_json") from None


def _json(obj: object) -> Response:
    return Response(content=_enc(obj), media_type="application/json")


# The handlers answer raw Responses (the agent's own msgspec types): the schema states their shapes here.
_TOKEN = [{"host_token": []}]


def _replies(ok: type, *statuses: int) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(ok, description="Request fulfilled", generate_examples=False), **errors(*statuses)}


@post("/hosts/register", status_code=200, tags=["hosts"], security=_TOKEN,
      responses=_replies(protocol.RegisterReply, 400, 401, 409, 413))
async def register(request: Request) -> Response:
    """A host agent announces its models and engine endpoints."""
    host = _host(request, holder=False)  # a newer agent may take the token over
    try:
        return _json(_fleet(request).register(host, await _body(request, protocol.Register), _instance(request)))
    except AgentReplaced as exc:
        raise _replaced(exc) from None


@post("/hosts/heartbeat", status_code=200, tags=["hosts"], security=_TOKEN,
      responses=_replies(protocol.HeartbeatReply, 400, 401, 404, 409, 413))
async def heartbeat(request: Request) -> Response:
    """Every few seconds: models served, in-flight, engine metrics, GPU telemetry."""
    host = _host(request)
    try:
        reply = await _fleet(request).heartbeat(host, await _body(request, protocol.Heartbeat))
    except FleetError as exc:
        # 404 tells the agent to register again (the router restarted, or forgot it).
        raise ApiError(404, str(exc), code="not_registered") from None
    return _json(reply)


@get("/hosts/ping", tags=["hosts"], security=_TOKEN, responses=_replies(protocol.PingReply, 401))
async def ping(request: Request) -> Response:
    """Reachable, and the token is known (`tokenmill-host check`); changes nothing."""
    fleet, host = _fleet(request), _host(request, holder=False)
    return _json(protocol.PingReply(host_id=host.id, name=host.name, state=fleet.status(host)))


@post("/hosts/drain", status_code=200, tags=["hosts"], security=_TOKEN,
      responses=_replies(protocol.DrainReply, 401, 409))
async def drain(request: Request) -> Response:
    """Stop sending this host new requests; those in flight finish."""
    fleet, host = _fleet(request), _host(request)
    await fleet.drain(host, by="host")
    return _json(protocol.DrainReply(state=fleet.status(host), outstanding=host.outstanding))


@post("/hosts/resume", status_code=200, tags=["hosts"], security=_TOKEN,
      responses=_replies(protocol.DrainReply, 401, 409))
async def resume(request: Request) -> Response:
    fleet, host = _fleet(request), _host(request)
    await fleet.resume(host, by="host")
    return _json(protocol.DrainReply(state=fleet.status(host), outstanding=host.outstanding))


@post("/hosts/deregister", status_code=200, tags=["hosts"], security=_TOKEN,
      responses=_replies(protocol.DrainReply, 401, 409))
async def deregister(request: Request) -> Response:
    """The host leaves the rotation until it registers again."""
    fleet, host = _fleet(request), _host(request)
    fleet.deregister(host)
    return _json(protocol.DrainReply(state=fleet.status(host), outstanding=host.outstanding))


ROUTES = [register, heartbeat, ping, drain, resume, deregister]
