"""Hosts die and drain under load: clients see retries, clean errors, and exact metering."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import text

from backend.ledger.queries import check_invariants
from hostkit.sim.engine import SimTiming
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
# Streams of 30 tokens at 100 tokens/s: long enough to be cut mid-way.
SLOW = SimTiming(decode_tps=100, ttft_base_s=0.02, prefill_tps=100_000)


async def one(sdk: openai.AsyncOpenAI, i: int) -> tuple[str, int]:
    """Returns (outcome, chunks received)."""
    msgs = [{"role": "user", "content": f"request {i}"}]
    if i % 2:
        r = await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=30)
        return "ok", r.usage.completion_tokens
    chunks = 0
    try:
        async for _ in await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=30, stream=True):
            chunks += 1
    except openai.APIError as exc:
        assert "not charged" in str(exc.message)
        return "cut", chunks
    return "ok", chunks


async def test_killing_a_host_under_load(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        doomed = await router.add_host("doomed", [MODEL], timing=SLOW, payout_share_bps=5000, own_process=True)
        healthy = await router.add_host("healthy", [MODEL], timing=SLOW, payout_share_bps=5000)
        _, secret = await router.client_with_key(credit_usd="100")
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)

        rep = next(r for r in router.services.fleet.replicas(MODEL) if r.host.id == doomed.host_id)

        async def killer():
            # Kill it while it is busy: streams under way and requests waiting for an answer.
            for _ in range(1000):  # until it is busy (bounded)
                if rep.outstanding >= 10:
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.08)
            await doomed.kill()

        results, _ = await asyncio.gather(asyncio.gather(*(one(sdk, i) for i in range(60))), killer())
        # Once the dead host is out, everything is served by the other.
        later = await asyncio.gather(*(one(sdk, i) for i in range(60, 80)))
        await sdk.close()

        outcomes = [o for o, _ in results]
        assert "cut" in outcomes, "some streams were running on the killed host"
        # Requests that had not started streaming (all the non-streaming ones) were retried.
        assert all(o == "ok" for i, (o, _) in enumerate(results) if i % 2)
        assert all(o == "ok" for o, _ in later)
        s = router.services
        await s.ledger.flush()
        async with s.engine.connect() as conn:
            assert await check_invariants(conn) == []
            rows = (await conn.execute(text(
                "SELECT host_id, status, charged, host_share FROM usage_event"))).all()
        failed = [r for r in rows if r.status == "failed"]
        assert len(failed) == outcomes.count("cut")
        assert all(r.charged == 0 and r.host_share == 0 for r in failed)
        ok = [r for r in rows if r.status == "ok"]
        assert len(ok) == outcomes.count("ok") + len(later)
        for host in (doomed, healthy):
            earned = sum(r.host_share for r in ok if r.host_id == host.host_id)
            assert s.ledger.account(f"host:{host.host_id}:payable").balance == earned
        # The non-streaming requests in flight on the dead host were retried on the other one.
        assert sum(1 for r in ok if r.host_id == doomed.host_id) < outcomes.count("ok")


async def test_a_refusing_replica_is_retried_elsewhere_and_ejected(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        bad = await router.add_host("bad", [MODEL])
        await router.add_host("good", [MODEL])
        bad.engine.fail("500")
        _, secret = await router.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        for i in range(10):
            r = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(i)}],
                                                  max_tokens=3)
            assert r.usage.completion_tokens == 3
        await sdk.close()
        rep = next(r for r in router.services.fleet.replicas(MODEL) if r.host.name == "bad")
        assert rep.failures == 1  # tried once, then ejected with backoff
        assert bad.engine.requests_total <= 1


@pytest.mark.parametrize(("fault", "status"), [("500", 502), ("hang", 504)])
async def test_when_every_replica_fails_the_client_gets_5xx_and_is_not_charged(tmp_path, fault, status):
    async with running_router(router_settings(tmp_path, upstream_read_timeout_s=0.3)) as router:
        for name in ("a", "b"):
            (await router.add_host(name, [MODEL])).engine.fail(fault)
        client_id, secret = await router.client_with_key()
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == status and e.value.body["code"] == "upstream_failed"
        await sdk.close()
        await router.services.ledger.flush()
        acc = router.services.ledger.account(f"client:{client_id}")
        assert acc.balance == acc.available == 10 * 10**9  # not charged


async def test_drain_under_load_fails_no_request(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        leaving = await router.add_host("leaving", [MODEL], timing=SLOW)
        await router.add_host("staying", [MODEL], timing=SLOW)
        _, secret = await router.client_with_key(credit_usd="100")
        sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        seen_at_drain = {}

        async def drainer():
            await asyncio.sleep(0.1)
            r = await router.http.post(f"/admin/hosts/{leaving.host_id}/drain", headers=router.admin)
            assert r.status_code == 200
            seen_at_drain["n"] = leaving.engine.requests_total

        async def load():
            return await asyncio.gather(*(one(sdk, i) for i in range(60)))

        results, _ = await asyncio.gather(load(), drainer())
        assert all(o == "ok" for o, _ in results)  # not one request failed
        assert leaving.engine.requests_total == seen_at_drain["n"]  # nothing new after the drain
        for _ in range(50):
            if leaving.replies and leaving.replies[-1].state == "drained":
                break
            await asyncio.sleep(0.05)
        assert leaving.replies[-1].state == "drained" and leaving.replies[-1].outstanding == 0
        await sdk.close()


async def test_a_client_that_leaves_mid_stream_pays_for_what_it_got(tmp_path):
    import httpx

    async with running_router(router_settings(tmp_path)) as router:
        host = await router.add_host("rig", [MODEL], timing=SimTiming(decode_tps=50, ttft_base_s=0.01))
        client_id, secret = await router.client_with_key()
        body = {"model": MODEL, "messages": [{"role": "user", "content": "tell me a long story"}],
                "max_tokens": 200, "stream": True}
        events = 0
        async with httpx.AsyncClient(base_url=router.url) as http:
            async with http.stream("POST", "/v1/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {secret}"}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: {"):
                        events += 1
                    if events == 6:
                        break  # the client goes away
        s = router.services
        for _ in range(100):  # the engine's work is cancelled and the request settled
            await asyncio.sleep(0.02)
            if host.engine.running == 0 and not s.ledger.open_holds():
                break
        assert host.engine.running == 0
        await s.ledger.flush()
        async with s.engine.connect() as conn:
            row = (await conn.execute(text("SELECT status, completion_tokens, charged FROM usage_event"))).one()
            assert await check_invariants(conn) == []
        assert row.status == "cancelled"
        assert 5 <= row.completion_tokens <= 10  # about what was delivered, not the 200 asked for
        quote = s.pricer.quote(s.catalogue.model(MODEL))
        assert row.charged == quote.cost(0, row.completion_tokens)
        assert s.ledger.account(f"client:{client_id}").balance == 10 * 10**9 - row.charged


async def test_many_clients_spending_one_balance_never_overdraw(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        await router.add_host("rig", [MODEL])
        client_id, first = await router.client_with_key(credit_usd="0.01")
        secrets_ = [first]
        for i in range(3):
            r = await router.http.post(f"/admin/clients/{client_id}/keys", json={"name": f"k{i}"},
                                       headers=router.admin)
            secrets_.append(r.json()["secret"])
        sdks = [openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=k, max_retries=0) for k in secrets_]

        async def spend(i: int) -> str:
            try:
                await sdks[i % 4].chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "spend"}], max_tokens=1000)
                return "ok"
            except openai.APIStatusError as exc:
                assert exc.status_code == 402, exc
                return "402"

        outcomes = await asyncio.gather(*(spend(i) for i in range(120)))
        assert "ok" in outcomes and "402" in outcomes
        s = router.services
        await s.ledger.flush()
        acc = s.ledger.account(f"client:{client_id}")
        assert 0 <= acc.available <= acc.balance
        async with s.engine.connect() as conn:
            assert await check_invariants(conn) == []
        for sdk in sdks:
            await sdk.close()

