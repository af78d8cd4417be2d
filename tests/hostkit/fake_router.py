"""A tiny stand-in for the router's /hosts API: records every call and checks the Bearer token.

The real router lives in backend/ (which hostkit never imports); this fake speaks the same
hostkit.protocol messages so the agent's real client code path is what the tests exercise.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from hostkit.protocol import DrainReply, Error, Heartbeat, HeartbeatReply, PingReply, Register, RegisterReply

TOKEN = "tmh-test-0123456789abcdefSECRET"


class FakeRouter:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[tuple[str, Any]] = []  # (path, decoded body or None), in order
        self.unauthorized = 0
        self.interval_s = 0.05  # heartbeat interval it hands out on register
        self.ask_drain = False  # HeartbeatReply.drain
        self.outstanding = 0  # HeartbeatReply/DrainReply.outstanding
        self.removed = False
        self.forget_host = False  # answer the next heartbeat 404, as a router that lost its registry
        self.has_ping = True  # False: a router from before GET /hosts/ping (404)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)

    def heartbeats(self) -> list[Heartbeat]:
        return [b for p, b in self.calls if p == "/hosts/heartbeat"]

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hosts/{action}", self._handle)
        app.router.add_get("/hosts/ping", self._ping)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ping(self, request: web.Request) -> web.Response:
        if not self.has_ping:
            return web.Response(status=404, text="Not Found")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return _reply(Error(message="bad host token", code="unauthorized"), status=401)
        self.calls.append((request.path, None))
        return _reply(PingReply(host_id="host-1", name="test-host", state="active"))

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return _reply(Error(message="bad host token", code="unauthorized"), status=401)
        action = request.match_info["action"]
        raw = await request.read()
        body: Any = None
        if action == "register":
            body = msgspec.json.decode(raw, type=Register)
        elif action == "heartbeat":
            body = msgspec.json.decode(raw, type=Heartbeat)
        self.calls.append((request.path, body))
        if action == "register":
            return _reply(RegisterReply(host_id="host-1", heartbeat_interval_s=self.interval_s))
        if action == "heartbeat" and self.forget_host:
            self.forget_host = False
            return _reply(Error(message="unknown host", code="not_found"), status=404)
        if action == "heartbeat":
            state = "removed" if self.removed else "draining" if body.draining else "active"
            return _reply(HeartbeatReply(state=state, outstanding=self.outstanding, drain=self.ask_drain))
        if action in ("drain", "resume"):
            return _reply(DrainReply(state="draining" if action == "drain" else "active", outstanding=self.outstanding))
        if action == "deregister":
            return web.Response(status=204)
        return _reply(Error(message=f"no such action {action}", code="not_found"), status=404)


def _reply(msg: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(msg), status=status, content_type="application/json")
