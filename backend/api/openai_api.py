"""The client API: OpenAI's /v1 surface, so the official SDKs work with base_url pointed here.

The two completion routes are raw ASGI handlers: they are the hot path, and Litestar's request
and response machinery measured as a large share of the router's CPU per request. Everything
else (models list, admin, hosts) is ordinary Litestar.
"""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Request, Response, asgi, get
from litestar.types import Receive, Scope, Send

from backend.api.errors import ApiError, error_bytes
from backend.routing.proxy import Proxy, Reply
from backend.routing.wire import encode

_JSON = b"application/json"


def _proxy(app) -> Proxy:
    return app.state.services.proxy


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body is over the limit of {limit} bytes.", code="request_too_large")
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def _send_whole(send: Send, status: int, body: bytes, content_type: bytes = _JSON,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_stream(receive: Receive, send: Send, reply: Reply) -> None:
    """Relay SSE bytes; if the client goes away, stop relaying (which cancels the engine's work)."""
    assert reply.stream is not None
    relay = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        relay.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
            (b"x-request-id", reply.request_id.encode())]})
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not gone:
            raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await reply.stream.aclose()


async def _serve(scope: Scope, receive: Receive, send: Send, kind: str) -> None:
    if scope["method"] != "POST":
        await _send_whole(send, 405, error_bytes(405, "Use POST.", "method_not_allowed"))
        return
    proxy = _proxy(scope["app"])
    try:
        key = proxy.authenticate(_header(scope, b"authorization"))  # before reading the body
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > proxy.max_body_bytes:
            raise ApiError(413, f"Request body is {length} bytes; the limit is {proxy.max_body_bytes}.",
                           code="request_too_large")
        body = await _read_body(receive, proxy.max_body_bytes)
        reply = await proxy.handle(kind, key, body)
    except ApiError as exc:
        extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await _send_whole(send, exc.status, error_bytes(exc.status, exc.message, exc.code, exc.param), extra=extra)
        return
    except ConnectionAbortedError:
        return
    if reply.stream is None:
        await _send_whole(send, reply.status, reply.body, reply.content_type,
                          [(b"x-request-id", reply.request_id.encode())])
    else:
        await _send_stream(receive, send, reply)


@asgi("/v1/chat/completions", is_mount=False, copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    """Create a chat completion (OpenAI-compatible; `stream` supported)."""
    await _serve(scope, receive, send, "chat")


@asgi("/v1/completions", is_mount=False, copy_scope=False)
async def completions(scope: Scope, receive: Receive, send: Send) -> None:
    """Create a text completion (OpenAI-compatible; `stream` supported)."""
    await _serve(scope, receive, send, "completions")


@get("/v1/models", tags=["client"])
async def list_models(request: Request) -> Response:
    """The models a client can use right now."""
    proxy = _proxy(request.app)
    proxy.authenticate(request.headers.get("authorization"))
    served = proxy.fleet.served_models()
    data = [
        {"id": m.id, "object": "model", "created": m.openrouter.created, "owned_by": "tokenmill",
         "context_length": m.context_length}
        for m in proxy.models.catalogue.models
        if m.id in served and proxy.models.enabled(m.id)
    ]
    return Response(content=encode({"object": "list", "data": data}), media_type="application/json")


ROUTES = [chat_completions, completions, list_models]
