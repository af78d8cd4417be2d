"""One error envelope on /v1, and x-request-id on every answer: the official openai SDK (and plain
HTTP where the SDK has no call) against a real router on loopback, real SQLite, simulated engines."""

from __future__ import annotations

import httpx
import openai
import pytest
from sqlalchemy import select

from backend.ledger.tables import UsageEvent
from backend.metrics.live import MINUTE_US
from backend.routing.engine_errors import engine_error
from backend.runtime.clock import now_us
from hostkit.sim.engine import SimTiming
from tests.router_harness import openai_client, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
HI = [{"role": "user", "content": "hi"}]
CREDIT = 10 * 10**9


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL])
        yield r


@pytest.fixture
async def sdk(router):
    async with openai_client(router) as client:
        yield client


async def _usage(router, request_id: str):
    await router.services.ledger.flush()
    t = UsageEvent.__table__
    async with router.services.engine.connect() as conn:
        return (await conn.execute(select(t.c.status, t.c.charged).where(t.c.request_id == request_id))).first()


def _live(router):
    now = now_us()
    return router.services.proxy.metrics.window(now - MINUTE_US, now + MINUTE_US)


def _is_envelope(body) -> None:
    assert isinstance(body, dict) and set(body) == {"message", "type", "code", "param"}, body
    assert body["message"] and body["type"] and body["code"]


async def test_models_retrieve(sdk):
    raw = await sdk.models.with_raw_response.retrieve(MODEL)
    model = raw.parse()
    assert (model.id, model.object) == (MODEL, "model") and model.context_length
    assert raw.headers["x-request-id"].startswith("req-")
    with pytest.raises(openai.NotFoundError) as e:
        await sdk.models.retrieve("gpt-17")
    assert (e.value.body["code"], e.value.body["param"]) == ("model_not_found", "model")
    assert e.value.request_id.startswith("req-")


async def test_unsupported_routes_say_so_in_the_envelope(sdk):
    with pytest.raises(openai.NotFoundError) as e:
        await sdk.embeddings.create(model=MODEL, input="hi")
    _is_envelope(e.value.body)
    assert e.value.body["code"] == "unsupported_endpoint"
    assert "POST /v1/embeddings" in e.value.body["message"] and "/v1/chat/completions" in e.value.body["message"]
    assert e.value.request_id.startswith("req-")
    with pytest.raises(openai.NotFoundError) as e:
        await sdk.responses.create(model=MODEL, input="hi")
    assert e.value.body["code"] == "unsupported_endpoint" and "/v1/responses" in e.value.body["message"]


async def test_wrong_method_is_405_in_the_envelope(router, sdk):
    async with httpx.AsyncClient(base_url=router.url, headers={"Authorization": f"Bearer {sdk.tm_secret}"}) as http:
        for method, path in (("GET", "/v1/chat/completions"), ("PUT", "/v1/completions"), ("DELETE", "/v1/models"),
                             ("POST", f"/v1/models/{MODEL}")):
            r = await http.request(method, path)
            assert r.status_code == 405, (method, path, r.text)
            _is_envelope(r.json()["error"])
            assert r.json()["error"]["code"] == "method_not_allowed"
            assert method in r.json()["error"]["message"]
            assert r.headers["allow"] and method not in r.headers["allow"]
            assert r.headers["x-request-id"].startswith("req-")


async def test_engine_plain_text_413_becomes_the_envelope_uncharged(router, sdk):
    # Under the router's 4 MiB limit, over the simulated engine's (aiohttp's 1 MiB, answered in plain
    # text), on an engine whose context could take the prompt.
    await router.hosts[0].kill()
    await router.add_host("rig-long", [MODEL], timing=SimTiming(speed=0, max_model_len=131_072))
    big = [{"role": "user", "content": "x " * 800_000}]
    with pytest.raises(openai.APIStatusError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=big, max_tokens=2)
    assert e.value.status_code == 413
    assert e.value.response.headers["content-type"].startswith("application/json")
    _is_envelope(e.value.body)
    assert (e.value.body["type"], e.value.body["code"]) == ("invalid_request_error", "request_too_large")
    assert await _usage(router, e.value.request_id) == ("failed", 0)  # the x-request-id is the usage event's
    account = router.services.ledger.account(f"client:{sdk.tm_client_id}")
    assert account.balance == account.available == CREDIT
    live = _live(router)
    assert (live.client_errors, live.failed) == (1, 0)


async def test_engine_4xx_gets_type_code_and_the_clients_param(router, sdk):
    # The engine refuses stream_options without stream, as vLLM does; its envelope has no code.
    with pytest.raises(openai.BadRequestError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=2,
                                          stream_options={"include_usage": True})
    _is_envelope(e.value.body)
    assert (e.value.body["type"], e.value.body["param"]) == ("invalid_request_error", "stream_options")
    assert await _usage(router, e.value.request_id) == ("failed", 0)
    assert _live(router).client_errors == 1 and _live(router).failed == 0


@pytest.mark.parametrize(("kind", "body", "param"), [
    ("chat", b'{"object":"error","message":"This model\'s maximum context length is 8192 tokens. However, you '
             b'requested 9000 tokens.","type":"BadRequestError","param":"prompt[0]","code":400}', "messages"),
    ("completions", b'{"error":{"message":"bad prompt","type":"BadRequestError","param":"prompt[0]","code":400}}',
     "prompt"),
    ("chat", b'{"detail":[{"loc":["body","max_tokens"],"msg":"Input should be greater than 0"}]}',
     "max_completion_tokens"),
    ("chat", b"Maximum request body size 1048576 exceeded, actual body size 2000000", None),
])
def test_engine_shapes_in_the_clients_terms(kind, body, param):
    status = 413 if body.startswith(b"Max") else 422 if b"detail" in body else 400
    out = engine_error(status, body, kind=kind, model=MODEL, max_param="max_completion_tokens")
    import msgspec

    err = msgspec.json.decode(out.body)["error"]
    assert out.status == (413 if status == 413 else 400)
    assert err["param"] == param and isinstance(err["code"], str) and err["type"] == "invalid_request_error"
    if b"context length" in body:
        assert err["code"] == "context_length_exceeded"


async def test_rate_limit_message_and_retry_after_agree(tmp_path):
    async with running_router(router_settings(tmp_path, key_rate_limit_rps=0.2, key_rate_limit_burst=1)) as r:
        await r.add_host("rig", [MODEL])
        _, secret = await r.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=r.url + "/v1", api_key=secret, max_retries=0)
        await sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as e:
            await sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
        after = e.value.response.headers["retry-after"]
        assert int(after) >= 1
        assert f"retry in {after} s" in e.value.message
        assert e.value.request_id.startswith("req-")
        now = now_us()
        assert r.services.proxy.metrics.window(now - MINUTE_US, now + MINUTE_US).client_errors == 1


async def test_x_request_id_on_every_answer_is_the_usage_events(router, sdk):
    raw = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=2)
    ok_id = raw.headers["x-request-id"]
    assert raw.parse().choices and (await _usage(router, ok_id))[0] == "ok"
    stream = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=2, stream=True)
    stream_id = stream.headers["x-request-id"]
    assert [c async for c in stream.parse()]
    assert (await _usage(router, stream_id))[0] == "ok"

    ids = {ok_id, stream_id}
    bad = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="tm-nope", max_retries=0)
    for call in (lambda: bad.chat.completions.create(model=MODEL, messages=HI),
                 lambda: bad.models.list(),
                 lambda: sdk.chat.completions.create(model="gpt-17", messages=HI),
                 lambda: sdk.chat.completions.create(model=MODEL, messages=HI, temperature=5)):
        with pytest.raises(openai.APIStatusError) as e:
            await call()
        assert e.value.request_id and e.value.request_id.startswith("req-")
        ids.add(e.value.request_id)
    assert len(ids) == 6  # one each
    live = _live(router)  # the completion routes' traffic: /v1/models is not metered
    assert (live.requests, live.failed, live.client_errors) == (2, 0, 3)


async def test_client_and_server_errors_are_counted_apart_in_the_admin_metrics(router, sdk):
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model=MODEL, messages=HI, top_p=2)
    router.hosts[0].engine.fail("500")
    with pytest.raises(openai.APIStatusError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert e.value.status_code >= 500 and e.value.request_id
    assert await _usage(router, e.value.request_id) == ("failed", 0)
    r = await router.http.get("/admin/metrics", headers=router.admin)
    assert r.status_code == 200, r.text
    m = r.json()
    assert (m["hour"]["requests"], m["hour"]["failed"], m["hour"]["client_errors"]) == (1, 1, 1)
    assert sum(m["series"]["client_errors"]) == 1 and sum(m["series"]["failed"]) == 1
    assert len(m["series"]["client_errors"]) == len(m["series"]["requests"])

