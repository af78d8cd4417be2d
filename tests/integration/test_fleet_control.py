"""Fleet control against the real router and real host agents: drain and resume asked by the
operator and by the host do not fight, one live agent holds a host token, a restart answers
"retry" (never 404) until the hosts are heard again, and holds a crash left open are voided."""

from __future__ import annotations

import asyncio
import time

import msgspec
import openai
import pytest
from sqlalchemy import text

from backend.ledger import chart
from backend.ledger.queries import check_invariants
from hostkit import protocol
from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.sim.engine import SimTiming, start_sim_engine
from tests.router_harness import FAST, Router, SimHost, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER_MODEL = "qwen2.5-7b-instruct"  # in the catalogue, served by no host here
BEAT_S = 0.2


async def until(cond, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def heard(router: Router, host_id: str, beats: int = 4) -> None:
    """Wait until the router has heard `beats` more heartbeats from the host."""
    host = router.services.fleet.host(host_id)
    for _ in range(beats):
        seen = host.last_seen
        await until(lambda seen=seen: host.last_seen != seen, "a heartbeat")


async def enrolled(router: Router, name: str) -> tuple[str, str]:
    r = await router.http.post("/admin/hosts", json={"name": name}, headers=router.admin)
    r.raise_for_status()
    return r.json()["host"]["id"], r.json()["token"]


async def started_agent(router: Router, name: str, token: str) -> Agent:
    agent = Agent(AgentConfig(router_url=router.url, host_token=token, name=name, engine="sim", models=[MODEL],
                              engine_port=0, control_port=0, heartbeat_interval_s=BEAT_S,
                              retry_initial_s=0.05, retry_max_s=0.2, sim=SimTiming(speed=0)))
    await agent.start()
    await until(lambda: agent.host_id is not None and agent.state == "active", f"{name} registered")
    return agent


def events_since(router: Router, seq: int, subject: str) -> list[str]:
    return [e.kind for e in router.services.events.since(seq) if e.subject == subject]


def last_seq(router: Router) -> int:
    events = router.services.events.since(0)
    return events[-1].seq if events else 0


async def admin(router: Router, host_id: str, action: str) -> str:
    r = await router.http.post(f"/admin/hosts/{host_id}/{action}", headers=router.admin)
    r.raise_for_status()
    return r.json()["status"]


async def test_drain_and_resume_by_operator_and_host_do_not_fight(tmp_path):
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=BEAT_S)) as router:
        host_id, token = await enrolled(router, "h")
        agent = await started_agent(router, "h", token)
        fleet = router.services.fleet
        host = fleet.host(host_id)
        try:
            # The operator drains, then resumes: the resume reaches the agent and sticks.
            await admin(router, host_id, "drain")
            await until(lambda: agent.state == "drained", "the agent drained on the operator's order")
            seq = last_seq(router)
            assert await admin(router, host_id, "resume") == "active"
            await until(lambda: agent.state == "active", "the agent resumed on the operator's order")
            await heard(router, host_id)
            assert fleet.status(host) == "active" and agent.state == "active"
            assert "host.draining" not in events_since(router, seq, host_id)
            assert fleet.choose(MODEL) is not None

            # The host drains itself (`tokenmill-host drain`): its drain stands over heartbeats...
            assert await agent.drain(timeout_s=10) is True
            await heard(router, host_id)
            assert fleet.status(host) == "drained" and agent.state == "drained"
            # ...until the operator resumes it: the heartbeat reply carries the resume to the agent.
            seq = last_seq(router)
            assert await admin(router, host_id, "resume") == "active"
            await until(lambda: agent.state == "active", "the agent resumed on the operator's order")
            await heard(router, host_id)
            assert fleet.status(host) == "active" and agent.state == "active"
            assert "host.draining" not in events_since(router, seq, host_id)

            # The operator drains, the host resumes itself: the latest order wins, and sticks.
            await admin(router, host_id, "drain")
            await until(lambda: agent.state == "drained", "the agent drained on the operator's order")
            await agent.resume()
            seq = last_seq(router)
            await heard(router, host_id)
            assert fleet.status(host) == "active" and agent.state == "active"
            assert "host.draining" not in events_since(router, seq, host_id)
        finally:
            await agent.stop(drain_timeout_s=1)


async def test_one_live_agent_holds_a_host_token(tmp_path):
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=BEAT_S)) as router:
        host_id, token = await enrolled(router, "h")
        fleet = router.services.fleet
        host = fleet.host(host_id)
        stray = await started_agent(router, "h", token)
        agent = None
        try:
            seq = last_seq(router)
            # A second agent with the same token (a restart that left the first running): it takes over.
            agent = await started_agent(router, "h", token)
            await until(lambda: stray.state == "replaced", "the first agent shut out")
            assert "host.agent_replaced" in events_since(router, seq, host_id)
            url = agent.status().endpoints[MODEL]
            await heard(router, host_id)
            assert host.replicas[MODEL].url == url.rstrip("/")
            heartbeats = host.last_seen

            # The stray leaves (drain, deregister): it cannot take down the host the other agent serves.
            await stray.stop(drain_timeout_s=1)
            await heard(router, host_id)
            assert host.last_seen != heartbeats and host.registered
            assert fleet.status(host) == "active" and agent.state == "active"
            assert fleet.choose(MODEL) is host.replicas[MODEL]
            assert "host.left" not in events_since(router, seq, host_id)

            # An older agent cannot take the token back from a newer one.
            body = protocol.Register(name="h", models=[], agent_started_us=1)
            r = await router.http.post("/hosts/register", content=msgspec.json.encode(body),
                                       headers={"Authorization": f"Bearer {token}",
                                                protocol.AGENT_INSTANCE_HEADER: "an-older-agent"})
            assert r.status_code == 409 and r.json()["error"]["code"] == protocol.AGENT_REPLACED
            assert host.replicas[MODEL].url == url.rstrip("/")
        finally:
            await stray.stop(drain_timeout_s=0)
            if agent is not None:
                await agent.stop(drain_timeout_s=1)


async def test_served_models_answer_retry_not_404_until_the_hosts_are_heard_after_a_restart(tmp_path):
    settings = router_settings(tmp_path)
    async with running_router(settings) as router:
        host = await router.add_host("h", [MODEL])
        _, secret = await router.client_with_key()
        token, host_id, key = host.token, host.host_id, host.engine_key

    async with running_router(settings) as router:  # the same data dir: a restart
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert caught.value.status_code in (429, 503), caught.value
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert caught.value.body["code"] == "fleet_starting"

        engine = await start_sim_engine([MODEL], timing=FAST, api_key=key)
        sim = SimHost(router, "h", token, host_id, engine, [MODEL], engine_key=key)
        await sim.register()
        router.hosts.append(sim)
        reply = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=3)
        assert reply.usage.completion_tokens == 3
        # Every host heard from: a model no host serves is not found again, not "retry" forever.
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model=OTHER_MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)
        await sdk.close()


async def test_holds_left_by_the_previous_run_are_voided_at_start(tmp_path):
    settings = router_settings(tmp_path)  # hold_ttl_s=600: far from expiring on its own
    async with running_router(settings) as router:
        client_id, _ = await router.client_with_key(credit_usd="10.00")
        ledger = router.services.ledger
        account = chart.client_account(client_id)
        for _ in range(3):  # requests in flight when the process died
            key = ledger.mint_key("req")
            ledger.reserve(account, chart.REVENUE, 10**9, code="usage", ref=key, key=key)
        await ledger.flush()
        assert ledger.account(account).available == 7 * 10**9

    async with running_router(settings) as router:
        ledger = router.services.ledger
        assert ledger.open_holds() == []
        assert ledger.account(account).available == 10 * 10**9
        async with router.services.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM ledger_open_hold"))).scalar() == 0
            voided = (await conn.execute(text(
                "SELECT created_us FROM ledger_transfer WHERE kind = 'void_pending'"))).scalars().all()
            assert await check_invariants(conn) == []
        assert len(voided) == 3 and len(set(voided)) == 1  # one operation, one transaction
        notes = [e for e in router.services.events.since(0) if e.kind == "ledger.holds_voided"]
        assert len(notes) == 1 and "3 holds" in notes[0].message


async def test_a_start_with_no_holds_left_says_nothing(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        assert not [e for e in router.services.events.since(0) if e.kind == "ledger.holds_voided"]

