"""Does a request fit the context of the engines serving its model?

vLLM takes a request only if its prompt tokens + max_tokens <= max_model_len (and the prompt alone
is shorter), and refuses the rest with a 400. The router has no tokenizer, so it counts the prompt
from the body's size twice over:
- at its least (PROMPT_BYTES_PER_TOKEN_MAX bytes a token, more than nearly any token holds): a
  request that cannot fit even so is refused here, before any credit is held, naming the param;
- as it likely is (PROMPT_BYTES_PER_TOKEN, typical of English text): the balancer prefers replicas
  whose max_model_len fits that, and falls back to those that fit the least count.
What slips through is refused by the engine itself, exactly as vLLM would.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.catalogue import ModelEntry
from backend.wire.errors import ApiError

PROMPT_BYTES_PER_TOKEN = 4
PROMPT_BYTES_PER_TOKEN_MAX = 32


@dataclass(frozen=True, slots=True)
class ContextFit:
    max_out: int  # completion tokens the request may produce (per choice): what credit is held for
    likely: int  # prompt + completion tokens, the prompt counted as it likely is
    least: int  # the same with the prompt at its least: no replica taking fewer can serve it


def context_fit(model: ModelEntry, max_model_len: int | None, body_bytes: int, max_tokens: int | None,
                max_tokens_param: str, prompt_param: str) -> ContextFit:
    """`max_model_len`: the largest among the model's replicas (None: unknown, the catalogue's
    context_length stands in). Raises ApiError 400 when no replica can take the request."""
    limit = max_model_len or model.context_length
    least_prompt = body_bytes // PROMPT_BYTES_PER_TOKEN_MAX + 1
    likely_prompt = max(body_bytes // PROMPT_BYTES_PER_TOKEN, least_prompt)
    if least_prompt >= limit:
        raise ApiError(400, f"This model's maximum context length is {limit} tokens, and the {prompt_param} alone "
                            f"is at least {least_prompt} tokens. Please reduce the length of the {prompt_param}.",
                       code="context_length_exceeded", param=prompt_param)
    if max_tokens is not None and least_prompt + max_tokens > limit:
        raise ApiError(400, f"'{max_tokens_param}' is {max_tokens}, but this model's maximum context length is "
                            f"{limit} tokens, prompt included (at least {least_prompt} here): ask for at most "
                            f"{limit - least_prompt}.", code="context_length_exceeded", param=max_tokens_param)
    # Without max_tokens an engine may write until the context is full (vLLM does), or up to our cap.
    max_out = max_tokens if max_tokens is not None else min(model.max_output_tokens, limit - least_prompt)
    out = max_tokens or 1
    return ContextFit(max_out=max_out, likely=likely_prompt + out, least=least_prompt + out)
