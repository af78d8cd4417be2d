"""The OpenAPI operations of the two completion routes, in OpenAI's shapes.

Those routes are raw ASGI handlers (the hot path, see openai_api.py), which Litestar leaves out of
its schema; these documentation-only types and handlers describe them, and openapi_setup.py merges
what Litestar generates for them into the app's schema. The limits are those the router checks
before holding any credit (backend/routing/wire.py: OpenAI's, and its own cap on `n`). Extra fields
are allowed: engines take vLLM's own options too.
"""

from __future__ import annotations

import copy
import functools
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, get, post
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, OpenAPIType, PathItem, Schema
from litestar.params import JSONBody

from backend.api.error_responses import errors
from backend.wire.client_request import MAX_N, MAX_STOP


def _between(kind: type, low: float, high: float) -> Any:
    # Stated twice: Litestar 2 drops a zero `ge` of an optional field from the schema (falsy).
    return Annotated[kind, msgspec.Meta(ge=low, le=high, extra_json_schema={"extra": {"minimum": low,
                                                                                       "maximum": high}})]


Temperature = _between(float, 0, 2)
TopP = _between(float, 0, 1)
Penalty = _between(float, -2, 2)
Stop = Annotated[str | Annotated[list[str], msgspec.Meta(max_length=MAX_STOP)], msgspec.Meta(
    description=f"up to {MAX_STOP} sequences where the engine stops", extra_json_schema={"extra": {"oneOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP}, {"type": "null"}]}})]
Positive = Annotated[int, msgspec.Meta(ge=1)]
_TOKEN_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}}
# msgspec takes one array type in a union, OpenAPI states all four: text, texts, token ids, lists of token ids.
Prompt = Annotated[str | list[Any], msgspec.Meta(description="text, texts, token ids, or lists of token ids",
                                                 extra_json_schema={"extra": {"oneOf": [
                                                     {"type": "string"},
                                                     {"type": "array", "items": {"type": "string"}},
                                                     _TOKEN_IDS, {"type": "array", "items": _TOKEN_IDS}]}})]


class StreamOptions(msgspec.Struct):
    include_usage: bool = False  # the router always asks the engine for usage; this shows it to the client


class FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema of the arguments


class Tool(msgspec.Struct):
    type: Literal["function"]
    function: FunctionDef


class ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ToolCallFunction(msgspec.Struct):
    name: str
    arguments: str  # JSON text


class ToolCall(msgspec.Struct):
    id: str
    type: Literal["function"]
    function: ToolCallFunction


class ChatMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # Text, or content parts ({"type": "text", "text": ...}); None only for an assistant's tool calls.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    max_tokens: Positive | None = None  # default: what the model's context leaves after the prompt
    max_completion_tokens: Positive | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: _between(int, 1, MAX_N) | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logprobs: bool | None = None
    top_logprobs: _between(int, 0, 20) | None = None  # needs logprobs: true
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    user: str | None = None


class CompletionRequest(msgspec.Struct):
    model: str
    prompt: Prompt
    max_tokens: Positive | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: _between(int, 1, MAX_N) | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logprobs: _between(int, 0, 5) | None = None
    echo: bool | None = None
    suffix: str | None = None
    seed: int | None = None
    user: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(msgspec.Struct):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: str | None  # stop, length, tool_calls
    logprobs: dict[str, Any] | None = None


class ChatCompletion(msgspec.Struct):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(msgspec.Struct):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChunkChoice(msgspec.Struct):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None  # on the last chunk, with stream_options.include_usage


class CompletionChoice(msgspec.Struct):
    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class Completion(msgspec.Struct):
    """A text completion; each streamed chunk has this shape too, `usage` on the last one only."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class CardPricing(msgspec.Struct):
    """OpenRouter's shape: USD per token as decimal strings, the price a request made now is quoted."""

    prompt: str
    completion: str


class ModelCard(msgspec.Struct):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    context_length: int  # what the replicas serving it admit (prompt and completion together)
    pricing: CardPricing


class ModelList(msgspec.Struct):
    object: Literal["list"]
    data: list[ModelCard]


API_KEY = [{"api_key": []}]
# `responses=` of GET /v1/models and GET /v1/models/{model_id} (openai_api.py).
LIST_MODELS = {200: ResponseSpec(ModelList, description="The models served now", generate_examples=False),
               **errors(401)}
RETRIEVE_MODEL = {200: ResponseSpec(ModelCard, description="The model", generate_examples=False),
                  **errors(400, 401, 404)}
_ERRORS = (400, 401, 402, 404, 413, 429, 502, 503, 504)


@post("/v1/chat/completions", status_code=200, tags=["client"], security=API_KEY, summary="Create a chat completion",
      responses=errors(*_ERRORS), operation_id="CreateChatCompletion")
async def _chat(data: JSONBody[ChatCompletionRequest]) -> ChatCompletion:
    """OpenAI's chat completions. With `stream: true` the answer is server-sent events, each `data:` line a
    ChatCompletionChunk, ending with `data: [DONE]`. The `x-request-id` header names the request in the
    ledger's usage events. Not enough credit: 402; over the key's rate or the fleet's capacity: 429 with
    Retry-After."""
    raise NotImplementedError


@post("/v1/completions", status_code=200, tags=["client"], security=API_KEY, summary="Create a completion",
      responses=errors(*_ERRORS), operation_id="CreateCompletion")
async def _completion(data: JSONBody[CompletionRequest]) -> Completion:
    """OpenAI's (legacy) text completions. With `stream: true` the answer is server-sent events, each
    `data:` line a Completion chunk, ending with `data: [DONE]`."""
    raise NotImplementedError


@get("/chunk", include_in_schema=True)
async def _chunk() -> ChatCompletionChunk:  # only so that the chunk's shape lands in the components
    raise NotImplementedError


_STREAMS = {"/v1/chat/completions": "ChatCompletionChunk", "/v1/completions": "Completion"}


@functools.cache
def _generated() -> tuple[dict[str, PathItem], dict[str, Schema]]:
    doc = Litestar(route_handlers=[_chat, _completion, _chunk],
                   openapi_config=OpenAPIConfig(title="-", version="-", use_handler_docstrings=True),
                   logging_config=None)
    schema = doc.openapi_schema
    paths = {path: schema.paths[path] for path in _STREAMS}
    for path, chunk in _STREAMS.items():
        ok = paths[path].post.responses["200"]
        ok.content["text/event-stream"] = OpenAPIMediaType(schema=Schema(
            type=OpenAPIType.STRING,
            description=f"With stream: true. Server-sent events: each `data:` line holds a {chunk} "
                        f"(#/components/schemas/{chunk}) as JSON; the last is `data: [DONE]`."))
        ok.headers = {"x-request-id": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=(
            "The request's id: its usage event in the ledger has the same one (errors carry one too)."))}
    return paths, dict(schema.components.schemas)


def completion_operations() -> tuple[dict[str, PathItem], dict[str, Schema]]:
    """The two routes' path items and the component schemas they refer to (copies: callers may edit)."""
    return copy.deepcopy(_generated())
