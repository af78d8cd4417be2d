"""The error responses routes declare in the OpenAPI schema: every one is OpenAI's envelope
(backend/api/errors.py), whatever the status, so a client reads `error.code` and `error.param`
the same way everywhere."""

from __future__ import annotations

from litestar.openapi import ResponseSpec

from backend.wire.errors import Envelope

MEANING = {
    400: "Invalid input: `error.param` names the field, `error.message` says what is wrong with it.",
    401: "Missing or unknown bearer token.",
    402: "Not enough prepaid credit for the request's worst-case cost.",
    403: "The token is valid, but not for this resource (another host's figures, say).",
    404: "No such resource: `error.code` says which kind (client_not_found, host_not_found...).",
    405: "Wrong method for this route.",
    409: "The request conflicts with the resource's state, or reuses an idempotency key with other content.",
    413: "The request body is over the server's limit.",
    429: "Rate limited, or no capacity now: retry after the `Retry-After` header's seconds.",
    500: "A bug on the server's side (logged for the operator).",
    502: "The engine that served the request failed.",
    503: "No healthy replica can take the request now: retry after `Retry-After`.",
    504: "The engine did not answer in time.",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a route handler: these statuses, each in the error envelope."""
    return {s: ResponseSpec(data_container=Envelope, description=MEANING[s], generate_examples=False)
            for s in statuses}


# What every admin route can answer besides its own errors: the admin token is checked first.
ADMIN = (401,)
# And what every admin route with a JSON body can: a malformed or over-long body.
ADMIN_BODY = (400, 401, 413)
# And what every admin route naming a resource in its path can: a bad parameter, an unknown id.
ADMIN_ID = (400, 401, 404)
