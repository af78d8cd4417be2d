"""OpenAI / vLLM wire shapes for the simulated engine: request bodies in, JSON bytes out.

Requests decode into msgspec Structs (unknown fields such as temperature are accepted and
ignored, as sampling does not change simulated text). Replies are built as plain dicts in the key
order vLLM writes and encoded compactly (no spaces), which is what vLLM sends.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

_json = msgspec.json.Encoder()
T = TypeVar("T")


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class TextPart(msgspec.Struct):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return " ".join(p.text for p in self.content or [] if p.text)


class _Sampling(msgspec.Struct, kw_only=True):
    model: str
    max_tokens: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    stop: str | list[str] | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop


class ChatRequest(_Sampling, kw_only=True):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None  # the newer name OpenAI clients send


class CompletionRequest(_Sampling, kw_only=True):
    prompt: str | list[str]  # token-id prompts are not simulated

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


class BadRequest(Exception):
    """A request the engine refuses; becomes the OpenAI error envelope."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def decode_request(body: bytes, kind: type[T]) -> T:
    """Decode and type-check a body; errors name the offending param (e.g. `messages[0].role`)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT_PATH.search(text)
        path = m.group("path") if m else ""
        missing = _MISSING.search(text)
        if missing:
            path = f"{path}.{missing.group('field')}" if path else missing.group("field")
        raise BadRequest(text, param=path or None) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None


def error_body(message: str, *, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return _json.encode({"error": {"message": message, "type": type_, "code": code, "param": param}})


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def models_list(models: list[str], created: int, max_model_len: int) -> bytes:
    return _json.encode({
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "vllm", "root": m, "parent": None,
             "max_model_len": max_model_len}
            for m in models
        ],
    })


def chat_completion(
    rid: str, created: int, model: str, texts: list[str], finish: list[str], use: dict[str, int]
) -> bytes:
    return _json.encode({
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t, "tool_calls": []}, "logprobs": None,
             "finish_reason": f, "stop_reason": None}
            for i, (t, f) in enumerate(zip(texts, finish, strict=True))
        ],
        "usage": use,
    })


def text_completion(
    rid: str, created: int, model: str, texts: list[str], finish: list[str], use: dict[str, int]
) -> bytes:
    return _json.encode({
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "text": t, "logprobs": None, "finish_reason": f, "stop_reason": None}
            for i, (t, f) in enumerate(zip(texts, finish, strict=True))
        ],
        "usage": use,
    })


class ChunkWriter:
    """Builds the SSE events of one streamed reply (`data: {json}\\n\\n`).

    With include_usage every chunk carries `"usage":null` and a last chunk with no choices
    carries the usage, as OpenAI and vLLM do; without it no chunk has a usage key.
    """

    def __init__(self, rid: str, created: int, model: str, *, chat: bool, include_usage: bool) -> None:
        self._head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                      "created": created, "model": model}
        self._chat = chat
        self._include_usage = include_usage

    def _event(self, choices: list[dict[str, Any]], use: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {**self._head, "choices": choices}
        if self._include_usage:
            chunk["usage"] = use
        return b"data: " + _json.encode(chunk) + b"\n\n"

    def role(self, index: int) -> bytes:
        return self._event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])

    def token(self, index: int, text: str) -> bytes:
        if self._chat:
            return self._event([{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])
        return self._event([{"index": index, "text": text, "logprobs": None, "finish_reason": None}])

    def finish(self, index: int, reason: str) -> bytes:
        body: dict[str, Any] = {"delta": {}} if self._chat else {"text": ""}
        return self._event([{"index": index, **body, "logprobs": None, "finish_reason": reason, "stop_reason": None}])

    def usage(self, use: dict[str, int]) -> bytes:
        return self._event([], use)

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
