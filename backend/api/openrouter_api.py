"""GET /openrouter/models (public, no key): the provider listing OpenRouter polls to route its users
to us. A thin handler over openrouter_listing.py, which says where each field comes from."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from backend.api.openrouter_listing import listing
from backend.wire.openrouter import OpenRouterListing


@get("/openrouter/models", tags=["public"],
     response_description="Every enabled model a replica can serve now, in OpenRouter's provider format.")
async def openrouter_models(request: Request) -> Response[OpenRouterListing]:
    """Every enabled model with a routable replica, in OpenRouter's provider model format: prices
    in USD per token at the current quote, the context length the fleet serves, the quantization
    its engines run, the parameters and features the router passes through, where its hosts are
    and the replicas' decode capacity in tokens per minute. Public: no key."""
    s = request.app.state.services
    body = listing(s.catalogue, s.models, s.fleet, s.pricer, s.settings.openrouter)
    return Response(msgspec.json.encode(body), media_type="application/json")


ROUTES = [openrouter_models]
