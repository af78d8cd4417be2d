"""The real host agent against the real router: `tokenmill-host drain` under load."""

from __future__ import annotations

import asyncio

import openai
from sqlalchemy import text

from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.sim.engine import SimTiming
from tests.integration.test_failover import SLOW, one
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"


async def test_an_agent_drains_under_load_and_leaves_when_idle(tmp_path):
    # Beats every 1 s: the agent beats through this test's event loop, busy with 60 slow requests; at
    # 0.5 s, three late beats under a loaded suite took the host out of the choice before it had any.
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=1.0)) as router:
        enrolled = (await router.http.post("/admin/hosts", json={"name": "agent-host"}, headers=router.admin)).json()
        config = AgentConfig(router_url=router.url, host_token=enrolled["token"], name="agent-host",
                             engine="sim", models=[MODEL], engine_port=0, control_port=0,
                             heartbeat_interval_s=1.0, sim=SimTiming(**SLOW.model_dump()))
        agent = Agent(config)
        await agent.start()
        fleet = router.services.fleet
        host = fleet.host(enrolled["host"]["id"])
        for _ in range(250):
            if fleet.is_up(host):
                break
            await asyncio.sleep(0.02)
        # The agent registers with its hardware check done: routable at once.
        assert fleet.is_up(host) and host.replicas[MODEL].check is not None and host.replicas[MODEL].check.passed
        await router.add_host("staying", [MODEL], timing=SLOW)
        _, secret = await router.client_with_key(credit_usd="100")
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        sim = agent.engine.sim
        checked = sim.requests_total  # the check's own requests (warm-up and measurement), not the router's
        at_drain = {}

        async def drain():
            deadline = asyncio.get_running_loop().time() + 30
            while host.outstanding < 5 and asyncio.get_running_loop().time() < deadline:  # until it is busy
                await asyncio.sleep(0.005)
            at_drain["drained"] = await agent.drain(timeout_s=30)  # what `tokenmill-host drain` does

        results, _ = await asyncio.gather(asyncio.gather(*(one(sdk, i) for i in range(60))), drain())
        await sdk.close()
        assert all(o == "ok" for o, _ in results)  # not one client request failed
        assert at_drain["drained"] is True
        # No request that arrived after the drain began was sent to the draining host.
        await router.services.ledger.flush()
        async with router.services.engine.connect() as conn:
            starts = (await conn.execute(text("SELECT started_us FROM usage_event WHERE host_id = :h"),
                                         {"h": host.id})).scalars().all()
        began = next(e.ts_us for e in router.services.events.since(0)
                     if e.kind == "host.draining" and e.subject == host.id)  # as the router saw it
        assert starts and max(starts) < began
        assert sim.requests_total - checked == len(starts)
        assert fleet.status(host) == "drained" and host.outstanding == 0
        await agent.stop()  # leaves: deregisters and stops its engine
        assert not host.registered and fleet.replicas(MODEL)[0].host.name == "staying"
        kinds = [e.kind for e in router.services.events.since(0) if e.subject == host.id]
        assert kinds[-2:] == ["host.draining", "host.left"]


async def test_an_agent_registers_again_when_the_router_forgot_it(tmp_path):
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=0.2)) as router:
        enrolled = (await router.http.post("/admin/hosts", json={"name": "h"}, headers=router.admin)).json()
        agent = Agent(AgentConfig(router_url=router.url, host_token=enrolled["token"], name="h", engine="sim",
                                  models=[MODEL], engine_port=0, control_port=0, heartbeat_interval_s=0.2,
                                  sim=SimTiming(speed=0)))
        await agent.start()
        fleet = router.services.fleet
        host = fleet.host(enrolled["host"]["id"])

        async def until(cond) -> bool:
            for _ in range(100):
                if cond():
                    return True
                await asyncio.sleep(0.02)
            return False

        assert await until(lambda: fleet.is_up(host))
        fleet.deregister(host)  # as after a router restart: registrations live in memory
        assert not host.registered
        assert await until(lambda: host.registered and fleet.choose(MODEL) is not None)
        await agent.stop(drain_timeout_s=2)
