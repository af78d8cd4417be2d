"""The hardware check gates routing: over real HTTP, a host whose check for a model is missing or
failed gets none of that model's traffic (clients see the usual no-capacity error) until it passes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import openai
import pytest

from hostkit import protocol
from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
OTHER = "llama-3.1-8b-instruct"


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def ask(sdk: openai.AsyncOpenAI, model: str = MODEL) -> str:
    reply = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    return reply.choices[0].message.content or ""


async def test_no_traffic_until_the_check_passes(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        host = await router.add_host("rig", [MODEL, OTHER], checks={MODEL: None})
        fleet = router.services.fleet
        _, secret = await router.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)

        # Registered and heartbeating, but no check reported for MODEL yet.
        with pytest.raises(openai.RateLimitError) as err:
            await ask(sdk)
        assert err.value.body["code"] == "no_capacity"
        assert await ask(sdk, OTHER)  # its other model passed and is served
        assert host.engine.requests_total == 1

        host.checks[MODEL] = False  # the check ran and failed
        replica = next(r for r in fleet.replicas(MODEL) if r.host.id == host.host_id)
        await until(lambda: replica.check is not None, "the failed check at the router")
        assert replica.check is not None and not replica.check.passed and replica.check.summary == "FAILED: test host"
        with pytest.raises(openai.RateLimitError):
            await ask(sdk)
        assert host.engine.requests_total == 1

        host.checks[MODEL] = True
        await until(lambda: replica.check is not None and replica.check.passed, "the passing check")
        assert await ask(sdk)
        assert host.engine.requests_total == 2
        kinds = [e.kind for e in router.services.events.since(0) if e.subject == host.host_id]
        assert "replica.check_failed" in kinds and kinds.count("replica.checked") == 2  # OTHER, then MODEL
        await sdk.close()


async def test_traffic_goes_only_to_the_host_that_passed(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        failed = await router.add_host("failed", [MODEL], checks={MODEL: False})
        passed = await router.add_host("passed", [MODEL])
        _, secret = await router.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        await asyncio.gather(*(ask(sdk) for _ in range(8)))
        await sdk.close()
        assert (failed.engine.requests_total, passed.engine.requests_total) == (0, 8)
        hosts = {h["name"]: h["status"] for h in (await router.http.get("/admin/hosts", headers=router.admin)).json()}
        assert hosts == {"failed": "quarantined", "passed": "active"}  # what the operator sees in the fleet view


async def test_ping_answers_a_known_token_and_changes_nothing(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        host = await router.add_host("rig", [MODEL])
        before = list(router.services.fleet.host(host.host_id).replicas)
        r = await router.http.get("/hosts/ping", headers={"Authorization": f"Bearer {host.token}"})
        assert r.status_code == 200
        assert r.json() == {"host_id": host.host_id, "name": "rig", "state": "active"}
        assert list(router.services.fleet.host(host.host_id).replicas) == before
        r = await router.http.get("/hosts/ping", headers={"Authorization": "Bearer tmh-unknown"})
        assert r.status_code == 401


def test_an_older_agent_without_checks_still_decodes():
    """Fields were only added: a Register or Heartbeat from an agent before checks decodes to none."""
    body = b'{"name": "old", "models": [{"model": "m", "endpoint": "http://h:1"}], "gpus": [{"index": 0, "name": "g"}]}'
    old = msgspec.json.decode(body, type=protocol.Register)
    assert old.checks == [] and old.gpus[0].processes == [] and old.driver_version is None
