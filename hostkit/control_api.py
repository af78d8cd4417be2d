"""The agent's local control API, on 127.0.0.1 only (what `tokenmill-host drain|resume|status` call).

It listens on loopback and has no authentication: whoever can reach it is already on the host.
- GET /status -> AgentStatus
- POST /drain {"timeout_s": S} (optional) -> DrainResult, once drained or after S seconds
- POST /resume -> AgentStatus
- POST /models {"models": ["a", "b"], "engines": [EngineSpec...]} -> AgentStatus once the engines of
  models no longer wanted stopped and the new ones started (`tokenmill-host serve-models`; the
  specs say how vLLM runs the new models, from the router's market)
- GET /engine-key -> {"engine_key": "..."}: the engines' bearer key, for `tokenmill-host check` (the
  engines refuse its decode-speed request without it). Kept out of /status, which `status --json`
  prints. Only for a Host header naming loopback, so a web page cannot read it by DNS rebinding.
Errors: {"error": "..."} with 400 (bad body, or a model the agent cannot serve), 403 (not loopback, or
/models without a JSON content type) or 409 (the agent is stopping).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
from aiohttp import web
from pydantic import ValidationError

from hostkit.engine_spec import EngineSpec
from hostkit.protocol import CheckResult

CONTROL_HOST = "127.0.0.1"
LOOPBACK_NAMES = (CONTROL_HOST, "localhost")


class AgentStatus(msgspec.Struct):
    """What GET /status returns (never the host token)."""

    name: str
    state: str  # starting, registering, active, draining, drained, removed, replaced, stopping, stopped
    host_id: str | None
    router_url: str
    router_reachable: bool
    engine: str
    models: list[str]
    endpoints: dict[str, str]  # model -> engine base URL as the router sees it
    in_flight: int | None  # running + waiting on the engine; None when it could not be read
    router_outstanding: int | None  # the router's count in its last reply
    draining: bool
    last_heartbeat_at: str | None  # UTC, ISO 8601, of the last heartbeat the router accepted
    heartbeat_interval_s: float
    agent_version: str
    local_endpoints: dict[str, str] = {}  # model -> engine base URL as this host reaches it
    checks: list[CheckResult] = []  # the latest hardware check per model (none yet: not in the list)
    engines: dict[str, str] = {}  # model -> the engine's state in a few words
    engine_events: list[str] = []  # recent launches, exits and relaunches, newest last


class DrainRequest(msgspec.Struct):
    timeout_s: float | None = None


class ServeModelsRequest(msgspec.Struct):
    models: list[str]
    engines: list[dict[str, object]] = []  # hostkit.engine_spec.EngineSpec as JSON, for vLLM hosts


class DrainResult(msgspec.Struct):
    drained: bool
    status: AgentStatus


class AgentStopping(RuntimeError):
    """The agent is shutting down and takes no drain or resume orders."""


class ControlledAgent(Protocol):
    def status(self) -> AgentStatus: ...

    async def drain(self, timeout_s: float) -> bool: ...

    async def resume(self) -> None: ...

    def engine_key(self) -> str: ...

    async def serve_models(self, models: list[str], specs: Sequence[EngineSpec] = ()) -> None: ...


class ControlServer:
    def __init__(self, runner: web.AppRunner) -> None:
        self._runner = runner
        self.port: int = runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://{CONTROL_HOST}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


def _json(obj: msgspec.Struct | dict[str, str], status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), status=status, content_type="application/json")


async def start_control_api(agent: ControlledAgent, port: int, default_drain_timeout_s: float = 600.0) -> ControlServer:
    async def status(_request: web.Request) -> web.Response:
        return _json(agent.status())

    async def drain(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw, type=DrainRequest) if raw.strip() else DrainRequest()
        except msgspec.MsgspecError as exc:
            return _json({"error": f"bad drain request: {exc}"}, status=400)
        timeout = default_drain_timeout_s if body.timeout_s is None else body.timeout_s
        try:
            drained = await agent.drain(max(0.0, timeout))
        except AgentStopping as exc:
            return _json({"error": str(exc)}, status=409)
        return _json(DrainResult(drained=drained, status=agent.status()))

    async def resume(_request: web.Request) -> web.Response:
        try:
            await agent.resume()
        except AgentStopping as exc:
            return _json({"error": str(exc)}, status=409)
        return _json(agent.status())

    async def serve_models(request: web.Request) -> web.Response:
        # A web page can send a cross-site POST to loopback, but not with this content type (a
        # browser asks first, and nothing here answers OPTIONS): the served models stay the host's call.
        if request.content_type != "application/json" or request.host.rsplit(":", 1)[0] not in LOOPBACK_NAMES:
            return _json({"error": "POST /models wants Content-Type: application/json and a Host of 127.0.0.1 "
                                   "or localhost"}, status=403)
        try:
            body = msgspec.json.decode(await request.read(), type=ServeModelsRequest)
            specs = [EngineSpec.model_validate(e) for e in body.engines]
        except (msgspec.MsgspecError, ValidationError) as exc:
            return _json({"error": f"bad models request: {exc}"}, status=400)
        try:
            await agent.serve_models(body.models, specs)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        except AgentStopping as exc:
            return _json({"error": str(exc)}, status=409)
        return _json(agent.status())

    async def engine_key(request: web.Request) -> web.Response:
        if request.host.rsplit(":", 1)[0] not in LOOPBACK_NAMES:
            return _json({"error": "the engine key is only given to a Host of 127.0.0.1 or localhost"}, status=403)
        return _json({"engine_key": agent.engine_key()})

    app = web.Application()
    app.add_routes([web.get("/status", status), web.post("/drain", drain), web.post("/resume", resume),
                    web.post("/models", serve_models),
                    web.get("/engine-key", engine_key)])
    # A drain waiting in POST /drain must not hold up the agent's exit for long.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, CONTROL_HOST, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ControlServer(runner)
