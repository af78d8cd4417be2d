"""The host agent against a fake router: register, heartbeat, drain, resume, deregister, retries."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.protocol import Register
from hostkit.sim.engine import SimTiming
from tests.hostkit.conftest import MODELS, eventually
from tests.hostkit.fake_router import TOKEN, FakeRouter


def config(router_url: str, **over: object) -> AgentConfig:
    values: dict[str, object] = {
        "router_url": router_url, "host_token": TOKEN, "name": "test-host", "models": MODELS,
        "gpu_type": "rtx4090", "engine_port": 0, "control_port": 0, "heartbeat_interval_s": 0.05,
        "retry_initial_s": 0.02, "retry_max_s": 0.1, "drain_timeout_s": 5, "sim": SimTiming(speed=0),
    }
    return AgentConfig.model_validate({**values, **over})


@pytest.fixture
async def agent(router: FakeRouter) -> AsyncIterator[Agent]:
    a = Agent(config(router.url))
    await a.start()
    yield a
    await a.stop(drain_timeout_s=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_registers_then_heartbeats_engine_metrics(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: router.count("/hosts/heartbeat") >= 2, what="heartbeats")
    register: Register = router.calls[0][1]
    assert router.paths()[0] == "/hosts/register" and router.unauthorized == 0
    assert (register.name, register.gpu_type, register.gpus) == ("test-host", "rtx4090", [])
    assert [m.model for m in register.models] == MODELS
    assert all(m.engine == "sim" and m.ready and m.metrics is not None for m in register.models)
    assert agent.state == "active" and agent.host_id == "host-1" and agent.router_reachable
    # The first registration carries each model's hardware check, run before it.
    assert [(c.model, c.passed) for c in register.checks] == [(m, True) for m in MODELS]
    assert all("decode speed" in c.summary and c.decode_tps for c in register.checks)

    def reported_tokens() -> int:
        beat = router.heartbeats()[-1]
        metrics = next(m.metrics for m in beat.models if m.model == MODELS[0])
        return metrics.generation_tokens_total if metrics else 0

    checked_tokens = reported_tokens()  # the check's own completions
    # The advertised endpoint is a working OpenAI-compatible engine whose metrics reach the router;
    # it takes requests only with the engine key the agent registered (and sends with every heartbeat).
    endpoint = register.models[0].endpoint
    assert register.engine_key and register.engine_key == agent.engine.key
    assert all(beat.engine_key == register.engine_key for beat in router.heartbeats())
    async with openai.AsyncOpenAI(base_url=endpoint + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with openai.AsyncOpenAI(base_url=endpoint + "/v1", api_key=register.engine_key, max_retries=0) as client:
        await client.chat.completions.create(model=MODELS[0], messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=5)
    before = router.count("/hosts/heartbeat")
    await eventually(lambda: router.count("/hosts/heartbeat") > before and reported_tokens() == checked_tokens + 5,
                     what="metrics in a heartbeat")
    assert router.heartbeats()[-1].checks == register.checks  # the same results, not checked again
    assert not router.heartbeats()[-1].draining


async def test_drains_when_the_router_asks(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: agent.state == "active")
    router.outstanding = 2
    router.ask_drain = True
    await eventually(lambda: agent.state == "draining" and router.heartbeats()[-1].draining)
    await asyncio.sleep(0.15)
    assert agent.state == "draining"  # the router still has requests out here
    router.outstanding = 0
    await eventually(lambda: agent.state == "drained", what="drained")
    # The operator cancels the drain from the console: the agent follows the router.
    router.ask_drain = False
    await eventually(lambda: agent.state == "active" and not router.heartbeats()[-1].draining)


async def test_local_drain_waits_for_the_engine_then_resume(router: FakeRouter) -> None:
    slow = SimTiming(decode_tps=20, ttft_base_s=0)  # 8 tokens take ~0.4 s
    agent = Agent(config(router.url, sim=slow))
    await agent.start()
    try:
        await eventually(lambda: agent.state == "active")
        endpoint = agent.status().endpoints[MODELS[0]]
        async with openai.AsyncOpenAI(base_url=endpoint + "/v1", api_key=agent.engine.key, max_retries=0) as client:
            request = asyncio.create_task(client.chat.completions.create(
                model=MODELS[0], messages=[{"role": "user", "content": "hi"}], max_tokens=8))
            await eventually(lambda: agent.status().in_flight == 1, what="request seen in flight")
            drain = asyncio.create_task(agent.drain(timeout_s=5))
            await asyncio.sleep(0.1)
            assert not drain.done() and agent.state == "draining"
            assert await drain is True
            assert request.done()  # drained only after the client got its whole reply
            assert (await request).usage.completion_tokens == 8  # type: ignore[union-attr]
        assert "/hosts/drain" in router.paths()
        await agent.resume()
        assert agent.state == "active" and router.paths().count("/hosts/resume") == 1
        await eventually(lambda: not router.heartbeats()[-1].draining)
    finally:
        await agent.stop(drain_timeout_s=0)


async def test_stop_drains_deregisters_and_stops_the_engine(router: FakeRouter) -> None:
    agent = Agent(config(router.url))
    await agent.start()
    await eventually(lambda: agent.state == "active")
    endpoint = agent.status().endpoints[MODELS[0]]
    await agent.stop()
    assert agent.state == "stopped"
    paths = router.paths()
    assert paths[-1] == "/hosts/deregister" and "/hosts/drain" in paths
    assert router.heartbeats()[-1].draining
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint + "/health")


async def test_keeps_retrying_until_the_router_comes_up() -> None:
    port = free_port()
    agent = Agent(config(f"http://127.0.0.1:{port}"))
    await agent.start()
    router = FakeRouter()
    try:
        await asyncio.sleep(0.3)  # several failed attempts
        assert agent.state == "registering" and not agent.router_reachable
        await router.start(port)
        await eventually(lambda: agent.state == "active" and router.count("/hosts/heartbeat") > 0,
                         what="registered once the router is up")
    finally:
        await agent.stop(drain_timeout_s=0)
        await router.stop()


async def test_router_that_forgot_the_host_gets_a_new_registration(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: router.count("/hosts/heartbeat") >= 1)
    router.forget_host = True
    await eventually(lambda: router.count("/hosts/register") == 2, what="registered again")


async def test_drain_with_the_router_gone_waits_out_its_heartbeat_timeout(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: agent.state == "active")
    await router.stop()
    started = time.monotonic()
    assert await agent.drain(timeout_s=5) is True
    # The router only takes a silent host out after MISSED_HEARTBEATS_DOWN (3) intervals of 0.05 s.
    assert time.monotonic() - started >= 0.1


async def test_wrong_token_is_retried_and_never_logged(router: FakeRouter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    agent = Agent(config(router.url, host_token="tmh-wrong-token-SECRET-999"))
    await agent.start()
    try:
        await eventually(lambda: router.unauthorized >= 3, what="retries after 401")
        assert agent.state == "registering" and router.calls == []
        assert "refused this host" in caplog.text
    finally:
        await agent.stop(drain_timeout_s=0)
    assert "SECRET" not in caplog.text


async def test_token_stays_out_of_logs_and_status(router: FakeRouter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    agent = Agent(config(router.url))
    await agent.start()
    await eventually(lambda: agent.state == "active")
    status = agent.status()
    await router.stop()
    await agent.stop(drain_timeout_s=1)
    assert TOKEN not in caplog.text and "SECRET" not in caplog.text
    assert TOKEN not in repr(status) and TOKEN not in repr(agent.config)
