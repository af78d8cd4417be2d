"""An engine's refusal (4xx) put in OpenAI's envelope, in the client's own terms.

Engines answer in their own shapes: vLLM's `{"object": "error", "message", "type":
"BadRequestError", "param", "code": 400}` (older) or the same inside `{"error": ...}`, FastAPI's
`{"detail": ...}`, or plain text (aiohttp's 413 for a body over its limit). Their `param` names
the engine's fields (`prompt[0]` for a chat request's rendered messages); the client gets the
field it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from backend.wire.errors import error_bytes

_decode = msgspec.json.Decoder().decode
_CODES = {400: "invalid_value", 404: "not_found", 408: "timeout", 413: "request_too_large",
          422: "invalid_value", 429: "engine_busy"}
_PROMPT_FIELDS = ("prompt", "prompt_token_ids", "input", "messages")
MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class EngineError:
    status: int
    body: bytes  # the envelope


def engine_error(status: int, body: bytes, *, kind: str, model: str, max_param: str) -> EngineError:
    """`kind`: "chat" or "completions"; `max_param`: the field the client bounded its output with."""
    message, code, param = _read(body)
    if not message:
        message = f"{model}: the engine refused the request ({status})."
    if status == 413:
        message = f"The request is too large for the engine serving {model}: {message}"
    if "maximum context length" in message:
        code = "context_length_exceeded"
        param = param or "prompt"
    if not isinstance(code, str) or not code or code.isdigit():
        code = _CODES.get(status, "engine_rejected")
    status = 400 if status == 422 else status  # OpenAI never answers 422; the SDKs expect 400
    return EngineError(status, error_bytes(status, message[:MAX_MESSAGE_CHARS], code,
                                           _client_param(param, kind, max_param)))


def _read(body: bytes) -> tuple[str, object, str | None]:
    """(message, code, param) from whichever shape the engine used."""
    try:
        doc = _decode(body)
    except (msgspec.DecodeError, RecursionError):
        return body.decode("utf-8", "replace").strip(), None, None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        doc = doc["error"]
    if not isinstance(doc, dict):
        return str(doc), None, None
    detail = doc.get("detail")
    if "message" not in doc and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        # FastAPI's validation error: loc is ["body", field, index...]
        loc = [str(x) for x in detail[0].get("loc") or [] if x != "body"]
        return str(detail[0].get("msg") or ""), None, loc[0] if loc else None
    message = doc.get("message", detail)
    param = doc.get("param")
    return str(message or ""), doc.get("code"), param if isinstance(param, str) and param else None


def _client_param(param: str | None, kind: str, max_param: str) -> str | None:
    if param is None:
        return None
    root = param.split("[", 1)[0].split(".", 1)[0]
    if root in _PROMPT_FIELDS:
        return "messages" if kind == "chat" else "prompt"
    if root in ("max_tokens", "max_completion_tokens"):
        return max_param
    return root
