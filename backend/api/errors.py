"""Litestar's answers in OpenAI's error envelope (backend/wire/errors.py): ApiError, its own refusals
(404, 405, 413, validation) and anything unexpected."""

from __future__ import annotations

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from backend.wire.errors import ApiError, error_bytes


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(content=error_bytes(status, message, code, param), status_code=status,
                    media_type="application/json", headers=headers)


def api_error_handler(_request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers)


# What the client API serves; any other /v1 path (embeddings, responses, audio...) says so.
CLIENT_ROUTES = ("POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{model}, "
                 "GET /v1/me, POST /v1/me/keys, DELETE /v1/me/keys/{id}, GET /v1/me/licences, "
                 "POST /v1/me/licences/{model}, GET and PUT /v1/me/billing, GET /v1/me/invoices, GET /v1/usage, "
                 "POST /v1/billing/checkout and POST /v1/billing/webhook")


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    """Litestar's own refusals (413 from the body limit, 405, 404 routes...) in the envelope."""
    status = exc.status_code
    path = request.scope.get("path", "")
    if path.startswith("/v1/") or path == "/v1":
        if status == 404:
            return error_response(404, f"Invalid URL ({request.method} {path}): this server does not support it; "
                                       f"it serves {CLIENT_ROUTES}.", code="unsupported_endpoint")
        if status == 405:
            return error_response(405, f"Method {request.method} is not allowed for {path}.",
                                  code="method_not_allowed", headers=exc.headers)
    codes = {413: "request_too_large", 404: "not_found", 405: "method_not_allowed"}
    if isinstance(exc, ValidationException):
        # A parameter or body field outside what the schema states: name it, as our own 400s do.
        first = exc.extra[0] if isinstance(exc.extra, list) and exc.extra else {}
        key = first.get("key") if isinstance(first, dict) else None
        param = key if key and key != "data" else None  # "data": the body as a whole
        detail = first.get("message") if isinstance(first, dict) else None
        message = f"{param or 'body'}: {detail}" if detail else exc.detail or "invalid request"
        return error_response(400, message, code="invalid_value", param=param, headers=exc.headers)
    return error_response(status, exc.detail or "error", code=codes.get(status), headers=exc.headers)


def internal_error_handler(_request: Request, exc: Exception) -> Response:
    import logging

    logging.getLogger("tokenmill.api").exception("unhandled error: %s", exc)
    return error_response(500, "internal error; the operator has been told", code="internal_error")
