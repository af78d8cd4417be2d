"""What the simulated engine answers for one choice: the tokens, why it ended, and the extras a
request asked for (logprobs, echo, a JSON shape, a tool call), before any timing or wire format."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

from hostkit.sim.structured import json_text
from hostkit.sim.text import TokenLogprob, cut_at_stop, generate_tokens, json_tokens, prompt_tokens, token_logprobs


@dataclass(frozen=True, slots=True)
class Shape:
    """The form of the output: free text, JSON (response_format), or a call of the function `tool`."""

    kind: Literal["text", "json", "tool"] = "text"
    schema: dict[str, Any] | None = None  # json: None is any object (json_object); tool: its parameters
    tool: str | None = None
    forced: Literal["named", "required"] = "named"  # tool: how tool_choice asked for it


TEXT = Shape()


@dataclass(frozen=True, slots=True)
class ChoicePlan:
    pieces: list[str]  # the text of each generated token, as delivered ('' where a stop string cut it)
    finish: str  # "stop" or "length"
    stop_reason: str | None  # the stop string that ended it
    logprobs: list[TokenLogprob] | None  # one per generated token, when asked for
    tool_call: tuple[str, str] | None = None  # (call id, function name): the pieces are its arguments
    echo: str = ""  # completions with echo: the prompt, before the output
    echo_logprobs: list[TokenLogprob] | None = None  # echo with logprobs: one per prompt token

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def plan_choice(*, model: str, prompt: str, seed: int, choice: int, max_tokens: int, stop: list[str],
                shape: Shape = TEXT, top_logprobs: int | None = None, echo: bool = False,
                prompt_token_count: int = 0) -> ChoicePlan:
    """`top_logprobs`: None for no logprobs, else how many of the most likely tokens to give."""
    key = f"{model}\0{seed}\0{choice}\0{prompt}"
    if shape.kind == "text":
        tokens = generate_tokens(model, prompt, seed, choice, max_tokens)
        finish = "length"
    else:
        schema = shape.schema if shape.kind == "json" else (shape.schema or {"type": "object", "properties": {}})
        tokens = json_tokens(json_text(key, schema))
        finish = "length" if len(tokens) > max_tokens else ("tool_calls" if shape.forced == "required" and
                                                             shape.kind == "tool" else "stop")
        del tokens[max_tokens:]
    pieces, generated, stop_string = cut_at_stop(tokens, stop)
    if stop_string is not None:
        finish = "stop"
    logprobs = None if top_logprobs is None else token_logprobs(key, tokens[:generated], top_logprobs)
    echo_logprobs = None
    if echo and top_logprobs is not None:
        first, *rest = token_logprobs(key + "\0prompt", prompt_tokens(prompt, max(1, prompt_token_count)),
                                        top_logprobs)
        echo_logprobs = [TokenLogprob(first.token, None, []), *rest]
    call = ("chatcmpl-tool-" + secrets.token_hex(16), shape.tool or "") if shape.kind == "tool" else None
    return ChoicePlan(pieces, finish, stop_string, logprobs, call, prompt if echo else "", echo_logprobs)
