"""Context length: /v1/models and the router's checks follow the engines' real max_model_len
(vLLM's /v1/models reports it; the agent passes it on), not the catalogue's 131072."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import text

from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.sim.engine import SimTiming
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"  # 131072 in the catalogue
SHORT = SimTiming(speed=0, max_model_len=8192)
LONG = SimTiming(speed=0, max_model_len=32768)


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


async def _sdk(router) -> tuple[openai.AsyncOpenAI, str]:
    client_id, secret = await router.client_with_key(credit_usd="100.00")
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0), client_id


async def _forwarded(router) -> int:
    """Requests the router sent to an engine (each leaves a usage event, charged or not)."""
    await router.services.ledger.flush()
    async with router.services.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM usage_event"))).scalar_one()


def _balance(router, client_id: str) -> tuple[int, int]:
    account = router.services.ledger.account(f"client:{client_id}")
    return account.balance, account.available


async def test_models_list_says_what_the_engines_take(router):
    assert router.services.catalogue.model(MODEL).context_length == 131072
    await router.add_host("short", [MODEL], timing=SHORT)
    sdk, _ = await _sdk(router)
    async with sdk:
        [card] = (await sdk.models.list()).data
        assert card.model_extra["context_length"] == 8192
        await router.add_host("long", [MODEL], timing=LONG)
        [card] = (await sdk.models.list()).data
        assert card.model_extra["context_length"] == 32768  # the largest among the replicas


async def test_max_tokens_beyond_every_replica_is_refused_before_credit_or_engine(router):
    host = await router.add_host("short", [MODEL], timing=SHORT)
    sdk, client_id = await _sdk(router)
    before = _balance(router, client_id)
    async with sdk:
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=10_000)
        assert err.value.body["param"] == "max_tokens"  # type: ignore[index]
        assert err.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
        assert "8192" in err.value.message
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_completion_tokens=8192)  # the prompt needs room too
        assert err.value.body["param"] == "max_completion_tokens"  # type: ignore[index]
        # What fits still goes through.
        r = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=8000)
        assert r.usage is not None and r.usage.completion_tokens == 8000
    assert host.engine.requests_total == 1
    assert await _forwarded(router) == 1  # the refused ones never reached the engine
    await router.services.ledger.flush()
    balance, available = _balance(router, client_id)
    assert balance == available < before[0]  # only the served request was charged, no hold left


async def test_a_prompt_longer_than_the_context_is_refused_naming_it(router):
    host = await router.add_host("tiny", [MODEL], timing=SimTiming(speed=0, max_model_len=512))
    sdk, _ = await _sdk(router)
    async with sdk:
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 4000}])
        assert err.value.body["param"] == "messages"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.completions.create(model=MODEL, prompt="word " * 4000)
        assert err.value.body["param"] == "prompt"  # type: ignore[index]
    assert host.engine.requests_total == 0
    assert await _forwarded(router) == 0  # refused by the router itself, not by the engine


async def test_a_long_request_goes_only_to_a_replica_that_takes_it(router):
    short = await router.add_host("short", [MODEL], timing=SHORT)
    long = await router.add_host("long", [MODEL], timing=LONG)
    sdk, _ = await _sdk(router)
    async with sdk:
        for _ in range(6):
            r = await sdk.completions.create(model=MODEL, prompt="tell me a long story", max_tokens=20_000)
            assert r.usage is not None and r.usage.completion_tokens == 20_000
        assert (short.engine.requests_total, long.engine.requests_total) == (0, 6)
        for _ in range(6):  # short ones still go to both
            await sdk.completions.create(model=MODEL, prompt="hi", max_tokens=5)
        assert short.engine.requests_total > 0
        with pytest.raises(openai.BadRequestError):
            await sdk.completions.create(model=MODEL, prompt="hi", max_tokens=40_000)


async def test_the_agent_reports_its_engines_max_model_len(router):
    enrolled = (await router.http.post("/admin/hosts", json={"name": "agent-host"}, headers=router.admin)).json()
    config = AgentConfig(router_url=router.url, host_token=enrolled["token"], name="agent-host", engine="sim",
                         models=[MODEL], engine_port=0, control_port=0, heartbeat_interval_s=0.3,
                         sim=SimTiming(speed=0, max_model_len=4096))
    agent = Agent(config)
    await agent.start()
    try:
        fleet = router.services.fleet
        host = fleet.host(enrolled["host"]["id"])
        for _ in range(1500):  # registered and checked (bounded: 30 s)
            rep = host.replicas.get(MODEL)
            if rep is not None and rep.check is not None and fleet.is_up(host):
                break
            await asyncio.sleep(0.02)
        assert host.replicas[MODEL].max_model_len == 4096
        sdk, _ = await _sdk(router)
        async with sdk:
            [card] = (await sdk.models.list()).data
            assert card.model_extra["context_length"] == 4096
            with pytest.raises(openai.BadRequestError) as err:
                await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=5000)
            assert err.value.body["param"] == "max_tokens"  # type: ignore[index]
    finally:
        await agent.stop(drain_timeout_s=0)
