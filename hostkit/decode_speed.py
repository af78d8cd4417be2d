"""Measure an engine's single-stream decode speed through its OpenAI API, as a client would see it.

One short warm-up request first (a fresh vLLM compiles or allocates on its first request), then
one streamed completion. The speed is the rate between the first and the last token received,
so time to first token (queueing, prefill) does not count: decode speed is what the catalogue's
estimate describes. The stream stops after `budget_s` once enough tokens arrived, which bounds
how long a check holds back a host's first traffic.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass

import httpx

PROMPT = "Write a long story about a lighthouse keeper who collects clocks."
MAX_TOKENS = 64
MIN_TOKENS = 8  # fewer than this and the rate is noise
BUDGET_S = 2.0


class DecodeMeasurementError(RuntimeError):
    """The engine did not produce a measurable stream; the message says what it did instead."""


@dataclass(frozen=True)
class DecodeSpeed:
    tokens: int  # tokens received after the first one
    seconds: float  # from the first token to the last
    ttft_s: float  # time to first token of the measured request

    @property
    def tokens_per_s(self) -> float:
        # A simulated engine at speed 0 streams everything at once: report a finite, huge rate.
        return self.tokens / max(self.seconds, 1e-6)


async def measure_decode_speed(base_url: str, model: str, *, max_tokens: int = MAX_TOKENS,
                               budget_s: float = BUDGET_S, timeout_s: float = 120.0,
                               engine_key: str | None = None, verify: ssl.SSLContext | bool = True) -> DecodeSpeed:
    """Stream a completion from `base_url` (no /v1) for `model` and time its tokens; `engine_key`:
    the bearer key the engine requires (hostkit/vllm_process.py), if any; `verify`: its TLS trust."""
    headers = {"Authorization": f"Bearer {engine_key}"} if engine_key else None
    # trust_env=False: a host's HTTP_PROXY must not capture calls to its own engine.
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, trust_env=False, headers=headers,
                                 verify=verify) as http:
        await _warm_up(http, model)
        return await _timed_stream(http, model, max(max_tokens, MIN_TOKENS + 1), budget_s)


async def _warm_up(http: httpx.AsyncClient, model: str) -> None:
    try:
        resp = await http.post("/v1/completions", json={"model": model, "prompt": "Hello", "max_tokens": 2})
    except httpx.HTTPError as exc:
        raise DecodeMeasurementError(f"no answer from the engine at {http.base_url} ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise DecodeMeasurementError(f"the engine answered HTTP {resp.status_code}: {resp.text[:200]}")


async def _timed_stream(http: httpx.AsyncClient, model: str, max_tokens: int, budget_s: float) -> DecodeSpeed:
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "stream": True, "temperature": 0,
            "ignore_eos": True}  # vLLM's extension: an early end-of-sequence must not cut the sample short
    sent = time.monotonic()
    first: float | None = None
    last = sent
    received = 0
    try:
        async with http.stream("POST", "/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise DecodeMeasurementError(f"the engine answered HTTP {resp.status_code}: {resp.text[:200]}")
            async for line in resp.aiter_lines():
                if not _is_token_event(line):
                    continue
                now = time.monotonic()
                if first is None:
                    first = now
                else:
                    received += 1
                last = now
                if received >= MIN_TOKENS and now - first >= budget_s:
                    break  # closing the stream cancels the rest of the request on the engine
    except httpx.HTTPError as exc:
        raise DecodeMeasurementError(f"the stream from {http.base_url} failed ({type(exc).__name__}: {exc})") from None
    if first is None or received < 1:
        raise DecodeMeasurementError(f"the engine streamed {received + (first is not None)} token(s); "
                                     f"at least 2 are needed to time decoding")
    return DecodeSpeed(tokens=received, seconds=last - first, ttft_s=first - sent)


def _is_token_event(line: str) -> bool:
    """An SSE data line carrying one decode step (not the final, usage or [DONE] events)."""
    if not line.startswith("data:"):
        return False
    payload = line[5:].strip()
    if payload == "[DONE]":
        return False
    try:
        choices = json.loads(payload).get("choices") or []
    except (ValueError, AttributeError):
        return False
    return any(c.get("finish_reason") is None or c.get("text") for c in choices)
