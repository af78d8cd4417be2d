"""Engine keys end to end: a real agent's engine refuses requests without its key, the router learns
the key from the agent and forwards with it, and the key shows up nowhere an operator or a log reads."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

import httpx
import openai
import pytest

from backend.fleet.registry import PLAIN_ENGINE_HEADERS, Fleet
from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.sim.engine import SimTiming, start_sim_engine
from tests.router_harness import FAST, Router, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


async def start_agent(router: Router, name: str = "agent-host") -> tuple[Agent, str]:
    enrolled = (await router.http.post("/admin/hosts", json={"name": name}, headers=router.admin)).json()
    agent = Agent(AgentConfig(router_url=router.url, host_token=enrolled["token"], name=name, engine="sim",
                              models=[MODEL], engine_port=0, control_port=0, heartbeat_interval_s=0.2,
                              sim=SimTiming(speed=0)))
    await agent.start()
    host_id = enrolled["host"]["id"]
    host = router.services.fleet.host(host_id)
    assert await until(lambda: router.services.fleet.is_up(host) and router.services.fleet.choose(MODEL) is not None)
    return agent, host_id


async def admin_pages(router: Router, host_id: str) -> str:
    """Everything the admin API shows about hosts, models and what happened."""
    pages = ["/admin/status", "/admin/hosts", f"/admin/hosts/{host_id}", "/admin/models", "/admin/events",
             "/admin/metrics", "/admin/usage?group_by=host"]
    texts = []
    for page in pages:
        r = await router.http.get(page, headers=router.admin)
        if r.status_code != 405:  # a page that is POST-only here
            texts.append(r.text)
    return "\n".join(texts)


async def test_an_agents_host_serves_through_the_router_with_its_key_and_only_with_it(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_router(router_settings(tmp_path)) as router:
        agent, host_id = await start_agent(router)
        key = agent.engine.key
        try:
            fleet = router.services.fleet
            host = fleet.host(host_id)
            assert host.engine_key == key
            assert host.replicas[MODEL].headers["Authorization"] == f"Bearer {key}"
            _, secret = await router.client_with_key()
            async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
                reply = await sdk.chat.completions.create(**CHAT)
                assert reply.usage.completion_tokens == 4
                chunks = [c async for c in await sdk.chat.completions.create(**CHAT, stream=True)]
                assert chunks
            served = agent.engine.sim.requests_total

            # Whoever finds the engine's port gets nothing without the key (the router's client key neither).
            endpoint = host.replicas[MODEL].url
            async with httpx.AsyncClient(base_url=endpoint) as direct:
                for headers in ({}, {"Authorization": f"Bearer {secret}"}, {"Authorization": "Bearer " + "x" * 43}):
                    refused = await direct.post("/v1/chat/completions", json=CHAT, headers=headers)
                    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
                assert (await direct.get("/v1/models")).status_code == 401
                assert (await direct.get("/metrics")).status_code == 401  # the operator's figures too
                assert (await direct.get("/health")).status_code == 200  # a liveness probe stays open
                ok = await direct.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
                assert ok.status_code == 200
            assert agent.engine.sim.requests_total == served + 1  # the refused ones never reached the model
            # The agent reads its engine's metrics with the key and hands them on in its heartbeats.
            assert await until(lambda: host.replicas[MODEL].metrics is not None
                               and host.replicas[MODEL].metrics.generation_tokens_total > 0)

            # The key is nowhere to be read: admin API, events, logs (the agent's and the router's).
            assert key not in await admin_pages(router, host_id)
            assert not any(key in e.message for e in router.services.events.since(0))
            assert key not in caplog.text and key not in repr(host) and key not in repr(host.replicas[MODEL])
        finally:
            await agent.stop(drain_timeout_s=2)


async def test_a_router_that_lost_the_key_learns_it_back(tmp_path) -> None:
    async with running_router(router_settings(tmp_path)) as router:
        agent, host_id = await start_agent(router)
        key = agent.engine.key
        fleet = router.services.fleet
        host = fleet.host(host_id)
        _, secret = await router.client_with_key()
        try:
            async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
                # Forgotten while registered: the next heartbeat carries it.
                Fleet._set_engine_key(host, None)
                assert host.replicas[MODEL].headers is PLAIN_ENGINE_HEADERS
                assert await until(lambda: host.engine_key == key)
                await sdk.chat.completions.create(**CHAT)
                # A router that restarted knows neither the registration nor the key: the agent registers again.
                fleet.deregister(host)
                Fleet._set_engine_key(host, None)
                assert await until(lambda: host.registered and host.engine_key == key and fleet.choose(MODEL))
                await sdk.chat.completions.create(**CHAT)
        finally:
            await agent.stop(drain_timeout_s=2)


async def test_an_engine_refusing_the_routers_key_is_an_upstream_failure_not_the_clients(tmp_path) -> None:
    """A 401 from an engine is about the router's engine key: the client must not read it as their key
    being wrong. Another replica gets the request; with none, a 502, not charged."""
    async with running_router(router_settings(tmp_path)) as router:
        key = secrets.token_urlsafe(32)
        engine = await start_sim_engine([MODEL], timing=FAST, api_key=key)
        # Its agent reports no key (yet): the router forwards without one and the engine refuses.
        stale = await router.enroll("stale", engine, [MODEL])
        _, secret = await router.client_with_key()
        balance = (await router.http.get("/admin/clients", headers=router.admin)).json()[0]["balance_nano"]
        async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
            with pytest.raises(openai.APIStatusError) as failed:
                await sdk.chat.completions.create(**CHAT)
            assert failed.value.status_code == 502 and "engine key" in failed.value.message
            assert (await router.http.get("/admin/clients", headers=router.admin)).json()[0]["balance_nano"] == balance
            rep = router.services.fleet.host(stale.host_id).replicas[MODEL]
            assert rep.ejected_until > 0  # out of rotation for a while

            # A healthy host takes over at once; the stale one is retried only once its key is known.
            await router.add_host("good", [MODEL])
            assert (await sdk.chat.completions.create(**CHAT)).usage.completion_tokens == 4
            stale.engine_key = key  # its heartbeats now carry the key
            assert await until(lambda: rep.headers.get("Authorization") == f"Bearer {key}" and rep.ejected_until == 0)
            before = engine.requests_total
            for _ in range(4):
                await sdk.chat.completions.create(**CHAT)
            assert engine.requests_total > before  # served again, with the key


async def test_an_older_agent_without_a_key_is_forwarded_to_as_before(tmp_path) -> None:
    async with running_router(router_settings(tmp_path)) as router:
        old = await router.add_host("old-agent", [MODEL], keyed=False)
        host = router.services.fleet.host(old.host_id)
        assert host.engine_key is None and host.replicas[MODEL].headers is PLAIN_ENGINE_HEADERS
        _, secret = await router.client_with_key()
        async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
            assert (await sdk.chat.completions.create(**CHAT)).usage.completion_tokens == 4
