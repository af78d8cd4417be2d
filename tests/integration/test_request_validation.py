"""What OpenAI refuses, the router refuses before holding any credit: a 400 naming `param`, with
OpenAI's `code`, never charged, and counted as a client error, apart from the service's failures.
The official openai SDK against a real router on loopback, real SQLite, simulated engines."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from backend.metrics.live import MINUTE_US
from backend.routing.validation import MAX_JSON_DEPTH, too_deep
from backend.runtime.clock import now_us
from tests.router_harness import openai_client, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-0.5b-instruct"
HI = [{"role": "user", "content": "hi"}]
CREDIT = 10 * 10**9


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER])
        yield r


@pytest.fixture
async def sdk(router):
    async with openai_client(router) as client:
        yield client


def _live(router):
    now = now_us()
    return router.services.proxy.metrics.window(now - MINUTE_US, now + MINUTE_US)


CHAT_CASES = [
    ({"temperature": 2.5}, "temperature", "decimal_above_max_value"),
    ({"temperature": -0.1}, "temperature", "decimal_below_min_value"),
    ({"top_p": 1.5}, "top_p", "decimal_above_max_value"),
    ({"presence_penalty": -2.5}, "presence_penalty", "decimal_below_min_value"),
    ({"frequency_penalty": 3}, "frequency_penalty", "decimal_above_max_value"),
    ({"n": 0}, "n", "integer_below_min_value"),
    ({"n": 17}, "n", "integer_above_max_value"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
    ({"stop": 7}, "stop", "invalid_type"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
    ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),
    ({"logprobs": 3}, "logprobs", "invalid_type"),
    ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text",
     "missing_required_parameter"),
    ({"messages": [*HI, {"role": "tool", "content": "42"}]}, "messages[1].tool_call_id", "missing_required_parameter"),
    ({"messages": []}, "messages", "empty_array"),
]


@pytest.mark.parametrize(("fields", "param", "code"), CHAT_CASES, ids=[f"{c[1]}-{c[2]}" for c in CHAT_CASES])
async def test_chat_requests_openai_refuses_are_400_before_any_hold(router, sdk, fields, param, code):
    with pytest.raises(openai.BadRequestError) as e:
        await sdk.chat.completions.create(**{"model": MODEL, "messages": HI, "max_tokens": 2, **fields})
    err = e.value.body
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")
    assert param in err["message"]
    assert e.value.request_id and e.value.request_id.startswith("req-")
    account = router.services.ledger.account(f"client:{sdk.tm_client_id}")
    assert account.balance == account.available == CREDIT  # never charged, nothing held
    live = _live(router)
    assert (live.client_errors, live.failed, live.requests) == (1, 0, 0)


COMPLETION_CASES = [
    ({"logprobs": 6}, "logprobs", "integer_above_max_value"),
    ({"stop": ["1", "2", "3", "4", "5"]}, "stop", "array_above_max_length"),
    ({"temperature": 9}, "temperature", "decimal_above_max_value"),
    ({"top_p": -1}, "top_p", "decimal_below_min_value"),
]


@pytest.mark.parametrize(("fields", "param", "code"), COMPLETION_CASES, ids=[c[1] for c in COMPLETION_CASES])
async def test_completion_requests_openai_refuses_are_400(router, sdk, fields, param, code):
    with pytest.raises(openai.BadRequestError) as e:
        await sdk.completions.create(**{"model": OTHER, "prompt": "x", "max_tokens": 2, **fields})
    assert (e.value.body["param"], e.value.body["code"]) == (param, code)
    assert router.services.ledger.account(f"client:{sdk.tm_client_id}").available == CREDIT


async def test_values_at_openais_bounds_pass(sdk):
    r = await sdk.chat.completions.create(
        model=MODEL, max_tokens=2, temperature=2, top_p=0, presence_penalty=-2, frequency_penalty=2, n=2,
        stop=["w", "x", "y", "z"], logprobs=True, top_logprobs=20,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": "what is 6*7?"}]},
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "mul", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "42"}])
    assert len(r.choices) == 2
    r = await sdk.completions.create(model=OTHER, prompt="x", max_tokens=2, logprobs=5, temperature=0)
    assert r.choices


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_json_nested_too_deep_is_400_without_a_traceback(router, sdk, caplog):
    caplog.set_level(logging.ERROR)
    head = b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2'
    async with httpx.AsyncClient(base_url=router.url, timeout=30,
                                 headers={"Authorization": f"Bearer {sdk.tm_secret}",
                                          "Content-Type": "application/json"}) as http:
        for body in (head + b', "x": ' + _nested(1000) + b"}",
                     head + b', "x": ' + _nested(MAX_JSON_DEPTH) + b"}",  # one more than allowed, with the object
                     b'{"model": "m", "x": ' + b"[" * 100_000):  # never closed
            r = await http.post("/v1/chat/completions", content=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "json_too_deep"
            assert r.headers["x-request-id"].startswith("req-")
        r = await http.post("/v1/chat/completions", content=head + b', "x": ' + _nested(MAX_JSON_DEPTH - 1) + b"}")
        assert r.status_code == 200, r.text
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
    assert _live(router).failed == 0


def test_depth_counts_brackets_in_strings_as_text():
    deep = b'{"a": "' + b"[" * 500 + b'", "b": "\\"' + b"{" * 500 + b'"}'
    assert not too_deep(deep)
    assert too_deep(b'{"a": [' + b'"x", ' * 100 + _nested(MAX_JSON_DEPTH) + b"]}")
    assert not too_deep(b"[" + b"[[]]," * 10_000 + b"[]]")
