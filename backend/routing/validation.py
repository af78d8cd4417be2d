"""A client's request body checked before any credit is held: the JSON nesting depth, then what
OpenAI itself refuses (bounds, roles, message content, stop, logprobs), as a 400 naming the
`param` with OpenAI's `code`.
"""

from __future__ import annotations

import itertools
import re

import msgspec
from msgspec import UNSET

from backend.wire.client_request import (
    ROLES,
    ChatRequest,
    ClientRequest,
    CompletionRequest,
    decode_chat,
    decode_completion,
)
from backend.wire.errors import ApiError

# Deeper than any real request (a tool's JSON schema nested 25 levels is still well inside), and far
# below the interpreter's recursion limit, which msgspec's decoder (and the engine's) would hit.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS_ONLY = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # for depth, an object is an array
_RUNS = re.compile(rb"\[+|\]+")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays/objects more than `limit` deep, without a Python step per byte:
    strings are cut out and the brackets kept (C passes); then, while the innermost level is a
    large share of what is left, one C pass removes it; else the few runs of brackets left are
    summed. A body whose brackets do not balance is left to the decoder to refuse."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case: cannot be deeper
        return False
    if b'\\"' in body:  # an escaped quote: strings need the regex to be found
        outside = _STRING.sub(b"", body)
    else:  # every quote opens or closes a string: what is outside them is every other piece
        outside = b"".join(body.split(b'"')[::2])
    brackets = outside.translate(_ONE_KIND, _BRACKETS_ONLY)
    removed = 0
    while brackets:
        leaves = brackets.count(b"[]")
        if not leaves:
            return False
        if leaves * 16 < len(brackets):
            signed = (len(r) if r[0] == 0x5B else -len(r) for r in _RUNS.findall(brackets))
            return removed + max(itertools.accumulate(signed)) > limit
        brackets = brackets.replace(b"[]", b"")
        removed += 1
        if removed > limit:
            return True
    return False


def _too_deep_error() -> ApiError:
    return ApiError(400, f"The request body nests JSON more than {MAX_JSON_DEPTH} levels deep.",
                    code="json_too_deep")


def parse(body: bytes, kind: str) -> ClientRequest:
    """The request decoded and validated; raises ApiError(400) for the client."""
    if too_deep(body):
        raise _too_deep_error()
    try:
        req = decode_chat(body) if kind == "chat" else decode_completion(body)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # brackets that never close, which too_deep() leaves to the decoder
        raise _too_deep_error() from None
    if isinstance(req, ChatRequest):
        _check_chat(req)
    else:
        _check_completion(req)
    return req


def _check_chat(req: ChatRequest) -> None:
    for i, m in enumerate(req.messages):
        content = m.content
        if content is UNSET or content is None:
            if m.role == "assistant" and (m.tool_calls or m.function_call is not None):
                continue
            if content is None:
                raise ApiError(400, f"Invalid type for 'messages[{i}].content': a {m.role} message needs a string "
                                    "or an array of content parts, got null.", code="invalid_type",
                               param=f"messages[{i}].content")
            raise _missing(f"messages[{i}].content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if part.type == "text" and part.text is UNSET:
                    raise _missing(f"messages[{i}].content[{j}].text")
        if m.role == "tool" and m.tool_call_id is UNSET:
            raise _missing(f"messages[{i}].tool_call_id")
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError(400, "Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.",
                       code="invalid_value", param="top_logprobs")


def _check_completion(req: CompletionRequest) -> None:
    if bytes(req.prompt) in (b"", b"null"):
        raise _missing("prompt")


def _missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param)


_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<field>[^`]+)`")


def _invalid(text: str) -> ApiError:
    """msgspec's message (e.g. "Expected `float` <= 2.0 - at `$.temperature`") as OpenAI's 400."""
    at = _AT.search(text)
    param = at.group("path") if at else ""
    what = text[:at.start()] if at else text
    if missing := _MISSING_FIELD.search(what):
        return _missing(f"{param}.{missing.group('field')}" if param else missing.group("field"))
    number = "integer" if "`int`" in what else "decimal"
    if "Invalid enum value" in what:
        code = "invalid_value"
        if param.endswith(".role"):
            what += ". Supported values are: " + ", ".join(f"'{r}'" for r in ROLES)
    elif "`, got `" in what:
        code = "invalid_type"
    elif "of length <=" in what:
        code = "array_above_max_length"
    elif "of length >= 1" in what:
        code = "empty_array"
    elif "of length >=" in what:
        code = "array_below_min_length"
    elif " <= " in what:
        code = f"{number}_above_max_value"
    elif " >= " in what:
        code = f"{number}_below_min_value"
    else:
        code = "invalid_value"
    if not param:
        return ApiError(400, f"Invalid request body: {what}.", code=code)
    return ApiError(400, f"Invalid '{param}': {what}.", code=code, param=param)
