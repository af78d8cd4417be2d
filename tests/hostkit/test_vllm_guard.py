"""The engine-key guard the agent loads into vLLM (hostkit/vllm_plugins/tokenmill_engine_guard.py),
served by uvicorn over real HTTP around a stand-in for vLLM's app that answers every route, as vLLM's
does: /v1/*, but also /invocations, /pause, /tokenize ... which vLLM's own key check leaves open."""

from __future__ import annotations

import asyncio
import importlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from hostkit import vllm_process

KEY = "k3y-For-The-Engines_0123456789abcdefghijklm"


async def vllm_app(scope, receive, send) -> None:
    """Answers 200 to every HTTP request (and accepts websockets): what the guard must protect."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"served " + scope["path"].encode()})


@pytest.fixture
def guard_module(monkeypatch: pytest.MonkeyPatch):
    """Imported as vLLM's `--middleware tokenmill_engine_guard.EngineKeyGuard` does: from its PYTHONPATH."""
    monkeypatch.syspath_prepend(str(vllm_process.GUARD_DIR))
    monkeypatch.setenv(vllm_process.KEY_ENV, KEY)
    module_name, class_name = vllm_process.GUARD_MIDDLEWARE.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


@pytest.fixture
async def guarded_url(guard_module) -> AsyncIterator[str]:
    app = guard_module(app=vllm_app)  # how Starlette's add_middleware builds it (older ones: by keyword)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    sock.close()


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/v1/models", "/invocations",
                                  "/inference/v1/generate", "/pause", "/tokenize", "/score", "/", "/healthz",
                                  "/metrics", "/metrics/"])
async def test_every_route_but_health_needs_the_key(guarded_url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=guarded_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}):
            refused = await http.post(path, json={}, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert refused.json()["error"]["code"] == "invalid_api_key"  # OpenAI's envelope
            assert refused.headers["www-authenticate"] == "Bearer" and KEY not in refused.text
        for scheme in ("Bearer", "bearer"):
            ok = await http.post(path, json={}, headers={"Authorization": f"{scheme} {KEY}"})
            assert (ok.status_code, ok.text) == (200, f"served {path}")


async def test_health_stays_open_for_liveness_probes(guarded_url: str) -> None:
    async with httpx.AsyncClient(base_url=guarded_url) as http:
        assert (await http.get("/health")).status_code == 200


async def test_websockets_without_the_key_are_closed_before_accept(guard_module) -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    guard = guard_module(vllm_app)
    await guard({"type": "websocket", "path": "/v1/realtime", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent.clear()
    authorized = [(b"authorization", f"Bearer {KEY}".encode())]
    await guard({"type": "websocket", "path": "/v1/realtime", "headers": authorized}, receive, send)
    assert sent == [{"type": "websocket.accept"}]


async def test_a_root_path_does_not_open_anything_else(guard_module) -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    guard = guard_module(vllm_app)
    for path, status in (("/x/health", 200), ("/x/invocations", 401), ("/health/../invocations", 401)):
        sent.clear()
        await guard({"type": "http", "path": path, "root_path": "/x", "headers": []}, None, send)
        assert sent[0]["status"] == status, path


def test_it_refuses_to_run_an_open_engine(guard_module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vllm_process.KEY_ENV)
    with pytest.raises(RuntimeError, match="refusing to serve without an engine key"):
        guard_module(vllm_app)


def test_it_needs_nothing_but_the_standard_library() -> None:
    """vLLM's Python imports it, and may not have tokenmill (or aiohttp, pydantic ...) installed."""
    source = (vllm_process.GUARD_DIR / "tokenmill_engine_guard.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "hmac", "json", "os"}
    assert [p.name for p in vllm_process.GUARD_DIR.iterdir() if p.suffix == ".py"] == ["tokenmill_engine_guard.py"]
