"""A real router on loopback (uvicorn, real SQLite), with simulated hosts registered through
the real host API. Used by the client API, failover and drain tests.

A simulated host's engine wants an engine key, as a real agent's does, and the host reports it in
register and heartbeat; `add_host(..., keyed=False)` plays an agent from before engine keys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from backend.app import Services, create_app
from backend.server import listen_socket, uvicorn_server
from backend.settings import Settings
from hostkit import protocol
from hostkit.sim.engine import SimEngine, SimTiming, start_sim_engine

FAST = SimTiming(speed=0)


_ENGINE_PROCESS = """
import asyncio, os, sys, json
from hostkit.sim.engine import SimTiming, start_sim_engine
async def main():
    e = await start_sim_engine(json.loads(sys.argv[1]), timing=SimTiming.model_validate_json(sys.argv[2]),
                               api_key=os.environ.get("SIM_ENGINE_KEY") or None)
    print(e.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class EngineProcess:
    """A simulated engine in its own process, so that a test can kill it like a crashed host."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, models: list[str], timing: SimTiming, api_key: str | None = None) -> EngineProcess:
        import json
        import sys

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ENGINE_PROCESS, json.dumps(models), timing.model_dump_json(),
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "SIM_ENGINE_KEY": api_key or ""})
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        return cls(proc, int(line))

    @property
    def running(self) -> int:
        return 0

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class SimHost:
    """A simulated engine plus the heartbeats its agent would send."""

    router: Router
    name: str
    token: str
    host_id: str
    engine: SimEngine | EngineProcess
    models: list[str]
    task: asyncio.Task | None = None
    draining: bool = False
    replies: list[protocol.HeartbeatReply] = field(default_factory=list)
    # The hardware check it reports per model: True passed (the default), False failed, None none yet.
    checks: dict[str, bool | None] = field(default_factory=dict)
    _checked_us: dict[str, tuple[bool, int]] = field(default_factory=dict)
    engine_key: str | None = field(default=None, repr=False)  # what its engine wants; None: no key
    tls_pin: str | None = None  # the certificate SHA-256 it reports; None: plain HTTP
    max_model_len: int | None = None  # what it reports its engine takes (an agent reads the engine's /v1/models)

    def _served(self) -> list[protocol.ServedModel]:
        return [protocol.ServedModel(model=m, endpoint=self.engine.url, engine="sim", max_model_len=self.max_model_len)
                for m in self.models]

    def _check_results(self) -> list[protocol.CheckResult]:
        results = []
        for m in self.models:
            passed = self.checks.get(m, True)
            if passed is None:
                continue
            if self._checked_us.get(m, (None,))[0] != passed:  # a new result when the outcome changes
                self._checked_us[m] = (passed, time.time_ns() // 1000)
            results.append(protocol.CheckResult(model=m, passed=passed, checked_us=self._checked_us[m][1],
                                                summary="passed: test host" if passed else "FAILED: test host"))
        return results

    async def register(self) -> None:
        body = protocol.Register(name=self.name, models=self._served(), agent_version="test",
                                 checks=self._check_results(), engine_key=self.engine_key,
                                 engine_tls_sha256=self.tls_pin)
        r = await self.router.http.post("/hosts/register", content=msgspec.json.encode(body),
                                        headers={"Authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.router.services.fleet.heartbeat_interval_s)
            body = protocol.Heartbeat(models=self._served(), in_flight=self.engine.running, draining=self.draining,
                                      checks=self._check_results(), engine_key=self.engine_key,
                                      engine_tls_sha256=self.tls_pin)
            with contextlib.suppress(httpx.HTTPError):
                r = await self.router.http.post("/hosts/heartbeat", content=msgspec.json.encode(body),
                                                headers={"Authorization": f"Bearer {self.token}"})
                if r.status_code == 200:
                    self.replies.append(msgspec.json.decode(r.content, type=protocol.HeartbeatReply))

    async def silence(self) -> None:
        """Stop heartbeating (the agent died), keep the engine."""
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def kill(self) -> None:
        """The whole host dies: no heartbeats, engine gone (connections refused or cut)."""
        await self.silence()
        await self.engine.stop()


@dataclass
class Router:
    url: str
    services: Services
    http: httpx.AsyncClient  # the admin and host API client
    admin: dict[str, str]
    hosts: list[SimHost] = field(default_factory=list)

    async def add_host(self, name: str, models: list[str], *, timing: SimTiming = FAST,
                       payout_share_bps: int = 0, own_process: bool = False,
                       checks: dict[str, bool | None] | None = None, keyed: bool = True) -> SimHost:
        key = secrets.token_urlsafe(32) if keyed else None
        if own_process:
            engine = await EngineProcess.start(models, timing, key)
        else:
            engine = await start_sim_engine(models, timing=timing, api_key=key)
        return await self.enroll(name, engine, models, payout_share_bps=payout_share_bps,
                                 checks=dict(checks or {}), engine_key=key, max_model_len=timing.max_model_len)

    async def enroll(self, name: str, engine: SimEngine | EngineProcess, models: list[str], *,
                     payout_share_bps: int = 0, **host: Any) -> SimHost:
        """Enroll a host for an engine already running and register it; `host`: SimHost fields
        (what its agent reports, e.g. engine_key or tls_pin, which may differ from the engine's)."""
        r = await self.http.post("/admin/hosts", json={"name": name, "provider": "local",
                                                       "payout_share_bps": payout_share_bps}, headers=self.admin)
        r.raise_for_status()
        enrolled = r.json()
        sim = SimHost(self, name, enrolled["token"], enrolled["host"]["id"], engine, models, **host)
        await sim.register()
        self.hosts.append(sim)
        return sim

    async def client_with_key(self, name: str = "acme", credit_usd: str = "10.00", *,
                              accept_licences: bool = True) -> tuple[str, str]:
        """A new client with credit and a key; it has accepted every model licence that needs it
        unless `accept_licences` is false (the licence tests)."""
        r = await self.http.post("/admin/clients", json={"name": name}, headers=self.admin)
        r.raise_for_status()
        client_id = r.json()["id"]
        if accept_licences:
            await self.services.licences.accept_all(client_id)
        if credit_usd != "0":
            r = await self.http.post(f"/admin/clients/{client_id}/credit",
                                     json={"amount_usd": credit_usd, "idempotency_key": f"seed-{client_id}"},
                                     headers=self.admin)
            r.raise_for_status()
        r = await self.http.post(f"/admin/clients/{client_id}/keys", json={"name": "test"}, headers=self.admin)
        r.raise_for_status()
        return client_id, r.json()["secret"]


@contextlib.asynccontextmanager
async def running_router(settings: Settings):
    services = await Services.start(settings)
    app = create_app(settings, services=services)
    sock = listen_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    http = httpx.AsyncClient(base_url=url, timeout=30)
    router = Router(url, services, http, {"Authorization": f"Bearer {services.admin_token}"})
    try:
        yield router
    finally:
        for h in router.hosts:
            await h.silence()
            with contextlib.suppress(Exception):
                await h.engine.stop()
        await http.aclose()
        server.should_exit = True
        await task
        await services.close()
        sock.close()


def router_settings(tmp_path, **overrides) -> Settings:
    # Heartbeats every 1 s (a host is down after 3 missed): the test's hosts beat through the same event
    # loop as the router, and under a loaded suite (4 xdist workers on 2 cores, 100 concurrent requests
    # in one test) 0.3 s beats were late three in a row, taking a live replica out of the choice (429).
    base = dict(data_dir=tmp_path, heartbeat_interval_s=1.0, key_rate_limit_rps=0, hold_ttl_s=600)
    base.update(overrides)
    return Settings(**base)


@contextlib.asynccontextmanager
async def openai_client(router: Router):
    """The real OpenAI SDK as a new client with credit would use it (no retries, so a test sees each
    answer); `tm_client_id` and `tm_secret` say whose it is."""
    import openai

    client_id, secret = await router.client_with_key()
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    client.tm_client_id = client_id
    client.tm_secret = secret
    try:
        yield client
    finally:
        await client.close()
