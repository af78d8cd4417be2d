"""The simulated engine seen through the official OpenAI SDK (and raw HTTP where the bytes matter)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from hostkit.prometheus import parse_engine_metrics
from hostkit.sim_engine import SimEngine
from tests.hostkit.conftest import MODELS

TEN_WORDS = "one two three four five six seven eight nine ten"
# ceil(10 words x 1.3) = 13, plus 4 for the single chat message.
TEN_WORDS_CHAT_PROMPT_TOKENS = 17


def chat_args(**extra: object) -> dict[str, object]:
    return {"model": MODELS[0], "messages": [{"role": "user", "content": TEN_WORDS}], "max_tokens": 7, **extra}


async def test_lists_the_served_models(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == MODELS
    assert all(m.object == "model" and m.owned_by == "vllm" for m in page.data)


async def test_chat_completion_has_openai_shape_and_counted_usage(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(**chat_args())
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODELS[0]
    assert r.created > 1_700_000_000
    [choice] = r.choices
    assert choice.index == 0 and choice.finish_reason == "length" and choice.message.role == "assistant"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (TEN_WORDS_CHAT_PROMPT_TOKENS, 7)
    assert r.usage.total_tokens == TEN_WORDS_CHAT_PROMPT_TOKENS + 7
    assert len(choice.message.content.split()) == 7  # one word per token


async def test_default_max_tokens_is_16(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model=MODELS[1], messages=[{"role": "user", "content": "hi"}])
    assert r.usage is not None and r.usage.completion_tokens == 16


async def test_stream_without_include_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    full = await client.chat.completions.create(**chat_args())
    chunks = [c async for c in await client.chat.completions.create(**chat_args(stream=True))]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(content) == 7  # one token per chunk
    assert "".join(content) == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


async def test_stream_with_include_usage_ends_with_the_same_usage(client: openai.AsyncOpenAI) -> None:
    full = await client.chat.completions.create(**chat_args())
    stream = await client.chat.completions.create(**chat_args(stream=True, stream_options={"include_usage": True}))
    chunks = [c async for c in stream]
    *body, last = chunks
    assert last.choices == [] and last.usage == full.usage
    assert all(c.usage is None and len(c.choices) == 1 for c in body)
    assert body[-1].choices[0].finish_reason == "length"


async def test_stream_bytes_are_compact_sse_like_vllm(engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(engine.url + "/v1/chat/completions",
                               json=chat_args(max_tokens=3, stream=True, stream_options={"include_usage": True}))
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = resp.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [e.removeprefix("data: ") for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-2])
    assert all(", " not in p and '": ' not in p for p in payloads)  # compact JSON
    assert all('"usage":null' in p for p in payloads[:-1])
    assert json.loads(payloads[-1])["choices"] == []
    # role chunk, 3 tokens, finish chunk, usage chunk
    assert len(payloads) == 6


async def test_completions_non_streaming_and_streaming_agree(client: openai.AsyncOpenAI) -> None:
    full = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, seed=3)
    assert full.id.startswith("cmpl-") and full.object == "text_completion"
    assert full.usage is not None and (full.usage.prompt_tokens, full.usage.completion_tokens) == (13, 5)
    stream = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, seed=3, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    assert chunks[-1].usage == full.usage
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


async def test_output_depends_only_on_model_prompt_and_seed(client: openai.AsyncOpenAI) -> None:
    async def text(model: str, seed: int) -> str:
        r = await client.chat.completions.create(**chat_args(model=model, seed=seed, max_tokens=12))
        return r.choices[0].message.content or ""

    assert await text(MODELS[0], 1) == await text(MODELS[0], 1)
    assert await text(MODELS[0], 1) != await text(MODELS[0], 2)
    assert await text(MODELS[0], 1) != await text(MODELS[1], 1)


async def test_n_choices_and_stop_words(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(**chat_args(n=3, max_tokens=40))
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage is not None and r.usage.completion_tokens == 120
    first_word = (r.choices[0].message.content or "").split()[3]
    stopped = await client.chat.completions.create(**chat_args(max_tokens=40, stop=[first_word]))
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage is not None and stopped.usage.completion_tokens < 40


async def test_metrics_use_vllm_names_and_counters_move(client: openai.AsyncOpenAI, engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        before = (await http.get(engine.url + "/metrics")).text
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                     "vllm:time_to_first_token_seconds_bucket"):
            assert f'{name}{{model_name="{MODELS[0]}"}}' in before or f"{name}{{le=" in before
        await client.chat.completions.create(**chat_args())
        after = parse_engine_metrics((await http.get(engine.url + "/metrics")).text)
    assert after[MODELS[0]].prompt_tokens_total == TEN_WORDS_CHAT_PROMPT_TOKENS
    assert after[MODELS[0]].generation_tokens_total == 7
    assert after[MODELS[1]].generation_tokens_total == 0
    assert engine.requests_total == 1 and engine.running == 0


async def test_health_is_200_with_empty_body(engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(engine.url + "/health")
    assert resp.status_code == 200 and resp.content == b""


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(**chat_args(model="nope"))
    assert err.value.body["param"] == "model"  # type: ignore[index]
    assert err.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODELS[0]}, "messages"),
    ({"model": MODELS[0], "messages": [{"role": 3, "content": "x"}]}, "messages[0].role"),
    ({"model": MODELS[0], "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "max_tokens"),
    ({"model": MODELS[0], "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"model": MODELS[0], "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}, "max_tokens"),
    ({"model": MODELS[0], "messages": [{"role": "user", "content": "x"}], "stream_options": {}}, "stream_options"),
])
async def test_bad_bodies_are_400_naming_the_param(client: openai.AsyncOpenAI, body: dict[str, object],
                                                   param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await client.post("/chat/completions", body=body, cast_to=httpx.Response)
    assert err.value.body["param"] == param  # type: ignore[index]
    assert err.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_invalid_json_is_400(engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(engine.url + "/v1/completions", content=b"{not json")
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "code", "param"}
