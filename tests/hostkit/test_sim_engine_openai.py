"""The simulated engine seen through the official OpenAI SDK (and raw HTTP where the bytes matter)."""

from __future__ import annotations

import json
import math
import re

import httpx
import openai
import pytest

from hostkit.prometheus import parse_engine_metrics
from hostkit.sim.engine import SimEngine
from hostkit.sim.text import decode_token_ids
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


# -- what vLLM honours beyond plain text (issue 10, point 16) --------------------------------------

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 2}, "unit": {"enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7},
                       "hourly": {"type": "boolean"}},
        "required": ["city", "unit"]}},
}
OTHER_TOOL = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}


def _fits_weather(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) >= {"city", "unit"} and set(args) <= {"city", "unit", "days", "hourly"}
    assert isinstance(args["city"], str) and len(args["city"]) >= 2
    assert args["unit"] in ("celsius", "fahrenheit")
    assert "days" not in args or (type(args["days"]) is int and 1 <= args["days"] <= 7)
    assert "hourly" not in args or type(args["hourly"]) is bool


def _tokens_of(text: str) -> list[str]:
    """The simulated text's tokens: one word each, with its leading space."""
    return re.findall(r"\s*\S+", text)


async def test_stop_substrings_cut_the_text_where_they_begin(client: openai.AsyncOpenAI) -> None:
    full = (await client.chat.completions.create(**chat_args(max_tokens=30))).choices[0].message.content or ""
    tokens = _tokens_of(full)
    # A stop string across a token boundary, inside words (vLLM matches substrings of the text).
    boundary = len("".join(tokens[:6]))
    stop = full[boundary - 2:boundary + 3]
    at = full.find(stop)
    ends = [len("".join(tokens[:n + 1])) for n in range(len(tokens))]
    generated = next(n + 1 for n, end in enumerate(ends) if end >= at + len(stop))
    r = await client.chat.completions.create(**chat_args(max_tokens=30, stop=["zzz", stop]))
    [choice] = r.choices
    assert choice.message.content == full[:at]
    assert choice.finish_reason == "stop" and choice.model_extra["stop_reason"] == stop
    assert r.usage is not None and r.usage.completion_tokens == generated
    stream = await client.chat.completions.create(**chat_args(max_tokens=30, stop=stop, stream=True))
    deltas = [c.choices[0].delta.content or "" async for c in stream]
    assert "".join(deltas) == full[:at] and not any(stop in d for d in deltas)


async def test_chat_logprobs_are_deterministic_and_well_formed(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(**chat_args(logprobs=True, top_logprobs=3))
    again = await client.chat.completions.create(**chat_args(logprobs=True, top_logprobs=3))
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and r.usage is not None and len(content) == r.usage.completion_tokens == 7
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob < 0 and t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert [x.logprob for x in t.top_logprobs] == sorted((x.logprob for x in t.top_logprobs), reverse=True)
        assert sum(math.exp(x.logprob) for x in t.top_logprobs) < 1
    assert again.choices[0].logprobs == r.choices[0].logprobs
    stream = await client.chat.completions.create(**chat_args(logprobs=True, top_logprobs=3, stream=True))
    streamed = [t async for c in stream if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]
    assert streamed == content
    plain = await client.chat.completions.create(**chat_args(logprobs=True))
    assert all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content or [])  # type: ignore[union-attr]
    assert (await client.chat.completions.create(**chat_args())).choices[0].logprobs is None


@pytest.mark.parametrize(("extra", "param"), [
    ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs=true
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tools"),
    ({"tools": [OTHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     "tool_choice"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
])
async def test_what_vllm_refuses_is_refused(client: openai.AsyncOpenAI, extra: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(**chat_args(**extra))
    assert err.value.body["param"] == param  # type: ignore[index]


async def test_completion_logprobs_and_echo(client: openai.AsyncOpenAI) -> None:
    plain = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5)
    r = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and len(lp.tokens) == 5
    assert "".join(lp.tokens) == r.choices[0].text == plain.choices[0].text
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(5)]
    assert lp.top_logprobs is not None and all(len(top) == 2 for top in lp.top_logprobs)
    assert all(top[tok] == p for top, tok, p in zip(lp.top_logprobs, lp.tokens, lp.token_logprobs or [], strict=True))

    echoed = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, echo=True)
    assert echoed.choices[0].text == TEN_WORDS + plain.choices[0].text
    assert echoed.usage == plain.usage
    both = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, echo=True, logprobs=1)
    lp = both.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
    assert len(lp.tokens) == 13 + 5 and "".join(lp.tokens) == both.choices[0].text  # 13 prompt tokens
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # nothing comes before the first
    stream = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=5, echo=True, stream=True)
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert texts[0] == TEN_WORDS and "".join(texts) == echoed.choices[0].text


async def test_json_object_response_format_is_valid_json(client: openai.AsyncOpenAI) -> None:
    for seed in range(5):
        r = await client.chat.completions.create(**chat_args(max_tokens=200, seed=seed,
                                                             response_format={"type": "json_object"}))
        [choice] = r.choices
        assert isinstance(json.loads(choice.message.content or ""), dict) and choice.finish_reason == "stop"
        assert r.usage is not None and 0 < r.usage.completion_tokens < 200
    # Without max_tokens it still finishes the object; with too few tokens it is cut, as in vLLM.
    r = await client.chat.completions.create(**chat_args(max_tokens=None, response_format={"type": "json_object"}))
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    cut = await client.chat.completions.create(**chat_args(max_tokens=3, response_format={"type": "json_object"}))
    assert cut.choices[0].finish_reason == "length" and cut.usage is not None and cut.usage.completion_tokens == 3
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER["function"]["parameters"]}}
    r = await client.completions.create(model=MODELS[0], prompt=TEN_WORDS, max_tokens=300,
                                        extra_body={"response_format": schema})
    _fits_weather(r.choices[0].text)


async def test_a_named_tool_choice_gets_a_call_that_fits_the_schema(client: openai.AsyncOpenAI) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in range(5):
        r = await client.chat.completions.create(**chat_args(max_tokens=300, seed=seed, tools=[OTHER_TOOL, WEATHER],
                                                             tool_choice=named))
        [choice] = r.choices
        assert choice.finish_reason == "stop" and not choice.message.content
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.function.name == "get_weather" and call.id
        _fits_weather(call.function.arguments)
    stream = await client.chat.completions.create(**chat_args(max_tokens=300, tools=[WEATHER], tool_choice=named,
                                                              stream=True))
    calls = [t async for c in stream if c.choices and c.choices[0].delta.tool_calls
             for t in c.choices[0].delta.tool_calls]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert all(t.index == 0 and t.id is None for t in calls[1:])
    arguments = "".join(t.function.arguments or "" for t in calls)
    _fits_weather(arguments)
    full = await client.chat.completions.create(**chat_args(max_tokens=300, tools=[WEATHER], tool_choice=named))
    assert arguments == (full.choices[0].message.tool_calls or [])[0].function.arguments
    auto = await client.chat.completions.create(**chat_args(tools=[WEATHER], tool_choice="auto"))
    assert auto.choices[0].message.content and not auto.choices[0].message.tool_calls


async def test_token_id_prompts(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODELS[0], prompt=[5, 6, 7, 8], max_tokens=4, echo=True)
    assert r.usage is not None and r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 4
    again = await client.completions.create(model=MODELS[0], prompt=[5, 6, 7, 8], max_tokens=4)
    other = await client.completions.create(model=MODELS[0], prompt=[5, 6, 7, 9], max_tokens=4)
    assert r.choices[0].text == decode_token_ids([5, 6, 7, 8]) + again.choices[0].text  # echo: the ids as text
    assert len(_tokens_of(decode_token_ids([5, 6, 7, 8]))) == 4 and again.choices[0].text != other.choices[0].text
    many = await client.completions.create(model=MODELS[0], prompt=[[1, 2], [3, 4, 5]], max_tokens=2)
    assert len(many.choices) == 2 and many.usage is not None and many.usage.prompt_tokens == 5
    for bad in ([-1], [10**9], [1, "a"]):
        with pytest.raises(openai.BadRequestError) as err:
            await client.completions.create(model=MODELS[0], prompt=bad, max_tokens=2)  # type: ignore[arg-type]
        assert err.value.body["param"] == "prompt"  # type: ignore[index]


async def test_models_report_max_model_len(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    assert all(m.model_extra["max_model_len"] == 8192 for m in page.data)
