"""What vLLM honours reaches a client through the router too (the simulated engine stands in for
vLLM in the embedded default): the official SDK against a real router and a simulated host."""

from __future__ import annotations

import json

import openai
import pytest

from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["sku", "qty"]}}}


@pytest.fixture
async def sdk(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        await router.add_host("rig", [MODEL])
        _, secret = await router.client_with_key()
        async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as client:
            yield client


async def test_tools_json_logprobs_stop_and_token_ids_through_the_router(sdk):
    msgs = [{"role": "user", "content": "order two widgets"}]
    r = await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=200, tools=[TOOL],
                                          tool_choice={"type": "function", "function": {"name": "lookup"}})
    [call] = r.choices[0].message.tool_calls or []
    args = json.loads(call.function.arguments)
    assert call.function.name == "lookup" and isinstance(args["sku"], str) and args["qty"] >= 1

    r = await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=200,
                                          response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)

    r = await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=5, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert len(content) == 5 and all(len(t.top_logprobs) == 2 for t in content)

    full = (await sdk.completions.create(model=MODEL, prompt="once upon", max_tokens=10)).choices[0].text
    stop = full[3:6]
    r = await sdk.completions.create(model=MODEL, prompt="once upon", max_tokens=10, stop=stop)
    assert r.choices[0].text == full[:full.find(stop)] and r.choices[0].finish_reason == "stop"

    r = await sdk.completions.create(model=MODEL, prompt=[11, 12, 13], max_tokens=3)
    assert r.usage is not None and r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 3
