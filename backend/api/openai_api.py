"""The client API: OpenAI's /v1 surface, so the official SDKs work with base_url pointed here."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.response import Stream

from backend.api.errors import ApiError
from backend.routing.proxy import Proxy
from backend.routing.wire import encode


def _proxy(request: Request) -> Proxy:
    return request.app.state.services.proxy


@post("/v1/chat/completions", status_code=200, include_in_schema=True, tags=["client"])
async def chat_completions(request: Request) -> Response | Stream:
    """Create a chat completion (OpenAI-compatible; `stream` supported)."""
    return await _serve(request, "chat")


@post("/v1/completions", status_code=200, tags=["client"])
async def completions(request: Request) -> Response | Stream:
    """Create a text completion (OpenAI-compatible; `stream` supported)."""
    return await _serve(request, "completions")


async def _serve(request: Request, kind: str) -> Response | Stream:
    proxy = _proxy(request)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > proxy.max_body_bytes:
        raise ApiError(413, f"Request body is {length} bytes; the limit is {proxy.max_body_bytes}.",
                       code="request_too_large")
    key = proxy.authenticate(request.headers.get("authorization"))  # before reading the body
    return await proxy.handle(kind, key, await request.body())


@get("/v1/models", tags=["client"])
async def list_models(request: Request) -> Response:
    """The models a client can use right now."""
    proxy = _proxy(request)
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
