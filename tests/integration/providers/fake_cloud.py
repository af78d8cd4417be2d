"""The shared part of the fake GPU clouds: an aiohttp server on loopback that checks the Bearer
key, records every request, and answers scripted failures before the real handler.

A fake stands in for what cannot run here (the clouds themselves); the adapters' real httpx
code path is what the tests exercise. Each cloud's fake answers in that cloud's documented
shapes (fake_runpod.py, fake_vast.py, fake_lambda.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEY = "rk-test-0123456789abcdefSECRETKEY"  # shaped like nothing logs.redact() knows, on purpose


@dataclass
class Seen:
    method: str
    route: str  # the route's pattern, "/v1/pods/{pod_id}"
    path: str
    query: dict[str, str]
    authorization: str
    body: Any
    at: float  # time.monotonic() on arrival


@dataclass
class Fault:
    """What to do to one request instead of (status != 0) or after (delay_s) the real handler."""

    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # with status 0: the real handler runs (and acts), then the answer is late


class FakeCloud:
    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.requests: list[Seen] = []
        self._faults: dict[tuple[str, str], deque[Fault]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ for subclasses
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def unauthorized(self) -> web.Response:
        return web.json_response({"error": "Unauthorized"}, status=401)

    # ------------------------------------------------------------------ for tests
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, method: str, route: str, *faults: Fault) -> None:
        """Apply `faults`, one per request, to the next requests matching method and route."""
        self._faults[(method, route)].extend(faults)

    def seen(self, method: str | None = None, route: str | None = None) -> list[Seen]:
        return [s for s in self.requests if method in (None, s.method) and route in (None, s.route)]

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ machinery
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Seen(request.method, route, request.path, dict(request.query),
                                  request.headers.get("Authorization", ""), body, time.monotonic()))
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self.unauthorized()
        queue = self._faults.get((request.method, route))
        fault = queue.popleft() if queue else None
        if fault is not None and fault.status:
            await asyncio.sleep(fault.delay_s)
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        response = await handler(request)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)  # the cloud acted; its answer arrives too late
        return response


async def body_of(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else None
