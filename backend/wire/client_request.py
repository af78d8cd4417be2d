"""The fields of a client's request the router reads and validates. The body itself is forwarded
as is: unknown fields pass through, only what OpenAI itself refuses is refused here.

The bounds are msgspec constraints, so decoding and validating is one pass in C; what a type
cannot say (which roles need content, top_logprobs needing logprobs) is checked in
`backend.routing.validation`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

MAX_N = 16  # choices per request: the credit hold is max_tokens times n
MAX_STOP = 4  # stop sequences, as OpenAI
ROLES = ("system", "developer", "user", "assistant", "tool", "function")

Temperature = Annotated[float, Meta(ge=0, le=2)]
UnitInterval = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]
Stop = str | Annotated[list[str], Meta(max_length=MAX_STOP)]


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ContentPart(msgspec.Struct):
    type: str
    text: str | UnsetType = UNSET


class Message(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # UNSET (absent) and None (null) differ: only an assistant calling tools may omit content.
    content: str | list[ContentPart] | UnsetType | None = UNSET
    tool_calls: list[msgspec.Raw] | None = None
    function_call: msgspec.Raw | None = None
    tool_call_id: str | UnsetType = UNSET


class _Request(msgspec.Struct, kw_only=True):
    model: str
    stream: bool = False
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: Annotated[int, Meta(ge=1, le=MAX_N)] = 1
    temperature: Temperature | None = None
    top_p: UnitInterval | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: Stop | None = None
    stream_options: StreamOptions | None = None


class ChatRequest(_Request, kw_only=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None


class CompletionRequest(_Request, kw_only=True):
    prompt: msgspec.Raw = msgspec.Raw(b"")  # a string or a list (empty = absent)
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None


ClientRequest = ChatRequest | CompletionRequest


class TokenUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class WithUsage(msgspec.Struct):
    """Any engine reply or stream chunk; only `usage` is decoded, the rest is skipped."""

    usage: TokenUsage | None = None


decode_chat = msgspec.json.Decoder(ChatRequest).decode
decode_completion = msgspec.json.Decoder(CompletionRequest).decode
decode_usage = msgspec.json.Decoder(WithUsage).decode
decode_any = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
