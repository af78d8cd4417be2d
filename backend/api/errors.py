"""Errors in OpenAI's envelope: {"error": {"message", "type", "code", "param"}}."""

from __future__ import annotations

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class Envelope(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}


_encode = msgspec.json.Encoder().encode


def error_bytes(status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
    return _encode(Envelope(ErrorBody(message, _TYPES.get(status, "error"), code, param)))


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(content=error_bytes(status, message, code, param), status_code=status,
                    media_type="application/json", headers=headers)


def api_error_handler(_request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers)


def http_exception_handler(_request: Request, exc: HTTPException) -> Response:
    """Litestar's own refusals (413 from the body limit, 405, 404 routes...) in the envelope."""
    status = exc.status_code
    codes = {413: "request_too_large", 404: "not_found", 405: "method_not_allowed"}
    return error_response(status, exc.detail or "error", code=codes.get(status), headers=exc.headers)


def internal_error_handler(_request: Request, exc: Exception) -> Response:
    import logging

    logging.getLogger("tokenmill.api").exception("unhandled error: %s", exc)
    return error_response(500, "internal error; the operator has been told", code="internal_error")
