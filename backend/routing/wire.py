"""The few fields of a client's request the router reads. The body itself is forwarded as is."""

from __future__ import annotations

import msgspec


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ClientRequest(msgspec.Struct):
    model: str
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int = 1
    stream_options: StreamOptions | None = None
    messages: list[msgspec.Raw] | None = None  # chat completions
    prompt: msgspec.Raw = msgspec.Raw(b"")  # completions: a string or a list (empty = absent)


class TokenUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class WithUsage(msgspec.Struct):
    """Any engine reply or stream chunk; only `usage` is decoded, the rest is skipped."""

    usage: TokenUsage | None = None


decode_request = msgspec.json.Decoder(ClientRequest).decode
decode_usage = msgspec.json.Decoder(WithUsage).decode
decode_any = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
