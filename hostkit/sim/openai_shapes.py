"""OpenAI / vLLM wire shapes for the simulated engine: request bodies in, JSON bytes out.

Requests decode into msgspec Structs (unknown fields such as temperature are accepted and
ignored, as sampling does not change simulated text). Replies are built as plain dicts in the key
order vLLM writes and encoded compactly (no spaces), which is what vLLM sends.

What vLLM honours and the simulated engine does too: stop strings, logprobs (chat: logprobs and
top_logprobs; completions: logprobs as a count), echo, response_format (json_object, json_schema),
tools with tool_choice naming a function (or "required"), and prompts given as token ids.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from hostkit.sim.text import TokenLogprob

if TYPE_CHECKING:
    from hostkit.sim.output import ChoicePlan

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


class FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(msgspec.Struct):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    type: Literal["function"]
    function: FunctionName


class JsonSchema(msgspec.Struct):
    name: str = "response"
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


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
    logprobs: bool | None = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None


class CompletionRequest(_Sampling, kw_only=True):
    # Text, texts, token ids, or lists of token ids (one prompt each).
    prompt: str | list[str | int | list[int]]
    logprobs: int | None = None
    echo: bool | None = False
    response_format: ResponseFormat | None = None

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: its text, or its token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [p] if p else []  # type: ignore[list-item]
        if all(isinstance(x, str) for x in p) or all(isinstance(x, list) for x in p):
            return p  # type: ignore[return-value]
        raise BadRequest("prompt must be a string, a list of strings, a list of token ids or a list of lists "
                         "of token ids, not a mix", param="prompt")


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


def chat_logprobs(entries: list[TokenLogprob], top: int) -> dict[str, Any]:
    return {"content": [
        {"token": e.token, "logprob": e.logprob, "bytes": list(e.token.encode()),
         "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in e.top[:top]]}
        for e in entries]}


def completion_logprobs(entries: list[TokenLogprob], top: int, offset: int) -> dict[str, Any]:
    """`offset`: where the first entry's token starts in the choice's text."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return {"text_offset": offsets, "token_logprobs": [e.logprob for e in entries],
            "tokens": [e.token for e in entries],
            "top_logprobs": [None if e.logprob is None else dict(e.top[:max(top, 1)]) for e in entries]}


def _tool_call(call: tuple[str, str], arguments: str) -> dict[str, Any]:
    return {"id": call[0], "type": "function", "function": {"name": call[1], "arguments": arguments}}


def chat_completion(rid: str, created: int, model: str, plans: list[ChoicePlan], top: int,
                    use: dict[str, int]) -> bytes:
    choices = []
    for i, plan in enumerate(plans):
        if plan.tool_call is not None:  # as vLLM answers a named tool_choice: empty content, one call
            message = {"role": "assistant", "content": "", "tool_calls": [_tool_call(plan.tool_call, plan.text)]}
        else:
            message = {"role": "assistant", "content": plan.text, "tool_calls": []}
        logprobs = chat_logprobs(plan.logprobs, top) if plan.logprobs is not None else None
        choices.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": plan.finish,
                        "stop_reason": plan.stop_reason})
    return _json.encode({"id": rid, "object": "chat.completion", "created": created, "model": model,
                         "choices": choices, "usage": use})


def text_completion(rid: str, created: int, model: str, plans: list[ChoicePlan], top: int,
                    use: dict[str, int]) -> bytes:
    choices = []
    for i, plan in enumerate(plans):
        logprobs = None
        if plan.logprobs is not None:
            entries = [*(plan.echo_logprobs or []), *plan.logprobs]
            logprobs = completion_logprobs(entries, top, 0)
        choices.append({"index": i, "text": plan.echo + plan.text, "logprobs": logprobs, "finish_reason": plan.finish,
                        "stop_reason": plan.stop_reason})
    return _json.encode({"id": rid, "object": "text_completion", "created": created, "model": model,
                         "choices": choices, "usage": use})


class ChunkWriter:
    """Builds the SSE events of one streamed reply (`data: {json}\\n\\n`).

    With include_usage every chunk carries `"usage":null` and a last chunk with no choices
    carries the usage, as OpenAI and vLLM do; without it no chunk has a usage key.
    """

    def __init__(self, rid: str, created: int, model: str, *, chat: bool, include_usage: bool, top: int = 0) -> None:
        self._head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                      "created": created, "model": model}
        self._chat = chat
        self._include_usage = include_usage
        self._top = top
        self._offsets: dict[int, int] = {}  # completions with logprobs: text written so far, per choice

    def _event(self, choices: list[dict[str, Any]], use: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {**self._head, "choices": choices}
        if self._include_usage:
            chunk["usage"] = use
        return b"data: " + _json.encode(chunk) + b"\n\n"

    def role(self, index: int) -> bytes:
        return self._event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])

    def token(self, index: int, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        if self._chat:
            lp = chat_logprobs(logprobs, self._top) if logprobs is not None else None
            return self._event([{"index": index, "delta": {"content": text}, "logprobs": lp, "finish_reason": None}])
        lp = None
        if logprobs is not None:
            offset = self._offsets.get(index, 0)
            lp = completion_logprobs(logprobs, self._top, offset)
            self._offsets[index] = offset + len(text)
        return self._event([{"index": index, "text": text, "logprobs": lp, "finish_reason": None}])

    def tool_call(self, index: int, arguments: str, call: tuple[str, str] | None = None,
                  logprobs: list[TokenLogprob] | None = None) -> bytes:
        """A piece of a tool call's arguments; `call` (id, name) with the first, as vLLM streams it."""
        delta = {"index": 0, **({"id": call[0], "type": "function"} if call else {}),
                 "function": {**({"name": call[1]} if call else {}), "arguments": arguments}}
        lp = chat_logprobs(logprobs, self._top) if logprobs is not None else None
        return self._event([{"index": index, "delta": {"tool_calls": [delta]}, "logprobs": lp, "finish_reason": None}])

    def finish(self, index: int, reason: str, stop_reason: str | None = None) -> bytes:
        body: dict[str, Any] = {"delta": {}} if self._chat else {"text": ""}
        return self._event([{"index": index, **body, "logprobs": None, "finish_reason": reason,
                             "stop_reason": stop_reason}])

    def usage(self, use: dict[str, int]) -> bytes:
        return self._event([], use)

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
