"""The client API: OpenAI's /v1 surface, so the official SDKs work with base_url pointed here.

The two completion routes are raw ASGI handlers: they are the hot path, and Litestar's request
and response machinery measured as a large share of the router's CPU per request. Everything
else (models list, admin, hosts) is ordinary Litestar.
"""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Request, Response, asgi, get
from litestar.params import FromPath
from litestar.types import Message, Receive, Scope, Send

from backend.api.openai_schema import API_KEY, LIST_MODELS, RETRIEVE_MODEL
from backend.pricing.quote import usd_per_token
from backend.routing.proxy import Proxy, Reply
from backend.wire.client_request import encode
from backend.wire.errors import ApiError, error_bytes

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
    proxy = _proxy(scope["app"])
    # Minted first, so that every answer names it, and it is the usage event's key if there is one.
    request_id = proxy.ledger.mint_key("req")
    tag = (b"x-request-id", request_id.encode())
    if scope["method"] != "POST":
        await _send_whole(send, 405, error_bytes(405, f"{scope['method']} is not allowed here: use POST.",
                                                 "method_not_allowed"), extra=[(b"allow", b"POST"), tag])
        return
    try:
        key = proxy.authenticate(_header(scope, b"authorization"))  # before reading the body
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > proxy.max_body_bytes:
            raise ApiError(413, f"Request body is {length} bytes; the limit is {proxy.max_body_bytes}.",
                           code="request_too_large")
        body = await _read_body(receive, proxy.max_body_bytes)
        reply = await proxy.handle(kind, key, body, request_id)
    except ApiError as exc:
        proxy.refused(exc)
        extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await _send_whole(send, exc.status, error_bytes(exc.status, exc.message, exc.code, exc.param),
                          extra=[*extra, tag])
        return
    except ConnectionAbortedError:
        return
    if reply.stream is None:
        await _send_whole(send, reply.status, reply.body, reply.content_type, [tag])
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


def _card(proxy: Proxy, m) -> dict:
    q = proxy.pricer.quote(m)  # the quote a request made now would snapshot: /v1/models and charges agree
    return {"id": m.id, "object": "model", "created": m.openrouter.created, "owned_by": "tokenmill",
            "context_length": proxy.fleet.advertised_context(m.id) or m.context_length,
            "pricing": {"prompt": usd_per_token(q.prompt_per_mtok), "completion": usd_per_token(q.completion_per_mtok)}}


@get("/v1/models", tags=["client"], security=API_KEY, responses=LIST_MODELS)
async def list_models(request: Request) -> Response:
    """The models a client can use right now."""
    proxy = _proxy(request.app)
    proxy.authenticate(request.headers.get("authorization"))
    served = proxy.fleet.served_models()
    data = [_card(proxy, m) for m in proxy.models.catalogue.models if m.id in served and proxy.models.enabled(m.id)]
    return Response(content=encode({"object": "list", "data": data}), media_type="application/json")


@get("/v1/models/{model_id:str}", tags=["client"], security=API_KEY, responses=RETRIEVE_MODEL)
async def retrieve_model(request: Request, model_id: FromPath[str]) -> Response:
    """One model a client can use right now (the SDKs' `models.retrieve`)."""
    proxy = _proxy(request.app)
    proxy.authenticate(request.headers.get("authorization"))
    m = proxy.models.get(model_id)
    if m is None or model_id not in proxy.fleet.served_models():
        raise ApiError(404, f"The model '{model_id}' does not exist or is not available.", code="model_not_found",
                       param="model")
    return Response(content=encode(_card(proxy, m)), media_type="application/json")


async def tag_request_id(message: Message, scope: Scope) -> None:
    """A `before_send` hook: every /v1 answer carries x-request-id, Litestar's own (a route that
    does not exist, a wrong method) included; the completion routes set theirs (the usage
    event's request id) themselves."""
    if message["type"] != "http.response.start" or not scope["path"].startswith("/v1"):
        return
    headers = message.setdefault("headers", [])
    if any(k.lower() == b"x-request-id" for k, _ in headers):
        return
    headers.append((b"x-request-id", _proxy(scope["app"]).ledger.mint_key("req").encode()))


ROUTES = [chat_completions, completions, list_models, retrieve_model]
