"""The error envelope, OpenAI's: {"error": {"message", "type", "code", "param"}}. Services raise
ApiError; the API answers it (backend/api/errors.py) and the raw /v1 path writes error_bytes."""

from __future__ import annotations

import msgspec

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
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
