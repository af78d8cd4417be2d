"""The official openai SDK against a real router on loopback, real SQLite, simulated engines."""

from __future__ import annotations

import asyncio

import openai
import pytest

from backend.ledger.queries import check_invariants
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-0.5b-instruct"


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER], payout_share_bps=7000)
        yield r


@pytest.fixture
async def sdk(router):
    client_id, secret = await router.client_with_key()
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    client.tm_client_id = client_id
    yield client
    await client.close()


async def test_list_models(router, sdk):
    page = await sdk.models.list()
    assert {m.id for m in page.data} == {MODEL, OTHER}
    # OpenRouter's `pricing`: USD per token as decimal strings, what a request is quoted now.
    card = {m.id: m for m in page.data}[MODEL]
    assert card.pricing == {"prompt": "0.00000014", "completion": "0.00000028"}  # $0.14 / $0.28 per 1M
    q = router.services.pricer.quote(router.services.catalogue.model(MODEL))
    assert (q.prompt_per_mtok, q.completion_per_mtok) == (140_000_000, 280_000_000)


async def test_chat_non_streaming_is_metered_to_the_token(router, sdk):
    r = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello there"}],
                                          max_tokens=20)
    assert r.choices[0].message.content
    assert r.usage.completion_tokens == 20
    s = router.services
    await s.ledger.flush()
    quote = s.pricer.quote(s.catalogue.model(MODEL))
    charged = quote.cost(r.usage.prompt_tokens, r.usage.completion_tokens)
    client = s.ledger.account(f"client:{sdk.tm_client_id}")
    assert client.balance == 10 * 10**9 - charged
    assert client.available == client.balance  # the rest of the hold was released
    host = s.fleet.hosts()[0]
    assert s.ledger.account(host.payable_account).balance == charged * 7000 // 10_000
    async with s.engine.connect() as conn:
        assert await check_invariants(conn) == []


async def test_streaming_without_usage_hides_the_usage_chunk(sdk):
    chunks = [c async for c in await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True)]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_streaming_with_usage_gets_it(sdk):
    chunks = [c async for c in await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True,
        stream_options={"include_usage": True})]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].choices == []


async def test_completions(sdk):
    r = await sdk.completions.create(model=OTHER, prompt="Once upon a time", max_tokens=5)
    assert r.choices[0].text and r.usage.completion_tokens == 5
    chunks = [c async for c in await sdk.completions.create(model=OTHER, prompt="x", max_tokens=5, stream=True)]
    assert chunks


async def test_errors_come_as_the_sdks_own_exceptions(router, sdk):
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=-1)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.NotFoundError) as e:
        await sdk.chat.completions.create(model="gpt-17", messages=msgs)
    assert e.value.body["param"] == "model"
    bad = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="tm-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model=MODEL, messages=msgs)
    with pytest.raises(openai.APIStatusError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 5_000_000}])
    assert e.value.status_code == 413


async def test_insufficient_credit_is_402_and_says_how_much(router):
    _, secret = await router.client_with_key("poor", credit_usd="0")
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 402
    assert "needs up to $" in e.value.message and "available is $0.000000" in e.value.message


async def test_revoked_key_fails_on_its_next_request(router, sdk):
    await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    key_id = router.services.clients.keys(sdk.tm_client_id)[0].id
    r = await router.http.post(f"/admin/keys/{key_id}/revoke", headers=router.admin)
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


async def test_disabled_model_is_404_and_comes_back(router, sdk):
    msgs = [{"role": "user", "content": "hi"}]
    await router.http.post(f"/admin/models/{MODEL}/disable", headers=router.admin)
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2)
    await router.http.post(f"/admin/models/{MODEL}/enable", headers=router.admin)
    await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2)


async def test_a_model_whose_hosts_all_left_is_retryable_but_one_never_served_is_404(router, sdk):
    msgs = [{"role": "user", "content": "hi"}]
    fleet = router.services.fleet
    await router.hosts[0].silence()
    fleet.deregister(fleet.host(router.hosts[0].host_id))  # its agent stopped (an upgrade, say)
    with pytest.raises(openai.RateLimitError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2)
    assert e.value.body["code"] == "no_capacity" and e.value.response.headers["retry-after"]
    with pytest.raises(openai.NotFoundError):  # in the catalogue, but no host has ever served it
        await sdk.chat.completions.create(model="mistral-7b-instruct-v0.3", messages=msgs, max_tokens=2)


async def test_no_capacity_is_429_never_5xx(router, sdk):
    await router.hosts[0].silence()

    await asyncio.sleep(router.services.fleet.heartbeat_interval_s * 4)
    with pytest.raises(openai.RateLimitError) as e:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "no_capacity"


async def test_rate_limit_is_429(tmp_path):
    async with running_router(router_settings(tmp_path, key_rate_limit_rps=0.5, key_rate_limit_burst=1)) as r:
        await r.add_host("rig", [MODEL])
        _, secret = await r.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=r.url + "/v1", api_key=secret, max_retries=0)
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        with pytest.raises(openai.RateLimitError) as e:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["code"] == "rate_limited"
        assert int(e.value.response.headers["retry-after"]) >= 1
