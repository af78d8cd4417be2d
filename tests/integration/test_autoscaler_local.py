"""End to end on the local provider: a real router on loopback, the local fleet's real host agents
(simulated engines, child processes), the real Provisioner renting on provider "local", and client
traffic through the router with the official OpenAI SDK. Load goes up -> the autoscaler rents a
replica (a new agent registers and takes traffic); the traffic stops -> that replica is drained
and torn down (its agent stopped, the host removed). No client request fails on the way."""

from __future__ import annotations

import asyncio
import time

import openai

from backend.localfleet.local_fleet import LocalFleet
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"  # served by the first local host (local-4090)
WORKERS = 10  # concurrent clients: 2.5x the demo engine's 4 slots
LIMIT_S = 60.0


async def _until(what: str, check, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit_s:g} s: {what}")
        await asyncio.sleep(0.1)


async def test_traffic_up_rents_a_local_replica_and_down_releases_it(tmp_path):
    settings = router_settings(
        tmp_path, heartbeat_interval_s=0.5, local_hosts=1, local_traffic_rps=0,
        autoscaler=dict(enabled=True, interval_s=1.0, window_s=2.0, upscale_delay=2, downscale_delay=3,
                        max_replicas=2, providers=["local"], host_keys="trust_new_instance"),
        pricing=dict(utilization_weight=1.0))
    start = time.monotonic()
    async with running_router(settings) as router:
        s = router.services
        fleet = LocalFleet(settings, s, router.url)
        await fleet.start()
        try:
            first = next(h for h in s.fleet.hosts() if h.name == "local-4090")
            await _until("the first local host serves", lambda: any(
                s.fleet.routable_now(r) for r in s.fleet.replicas(MODEL)), 30)
            _, secret = await router.client_with_key(credit_usd="50.00")
            client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
            done, failures = 0, []
            stop = asyncio.Event()

            async def worker() -> None:
                nonlocal done
                while not stop.is_set():
                    try:
                        r = await client.chat.completions.create(
                            model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=40)
                        assert r.choices[0].message.content
                        done += 1
                    except Exception as exc:  # counted, never retried: every request must succeed
                        failures.append(repr(exc))

            workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
            try:
                def rented() -> list:
                    return [h for h in s.fleet.hosts() if h.provider == "local" and h.id != first.id]

                await _until("a replica is rented and takes traffic", lambda: any(
                    s.fleet.routable_now(r) for h in rented() for r in h.replicas.values()), 40)
                new = rented()[0]
                served_before = done
                await _until("the new replica serves requests", lambda: done > served_before + WORKERS, 20)
            finally:
                stop.set()
                await asyncio.gather(*workers)
                await client.close()
            assert failures == []
            assert len(rented()) == 1  # one need, one rental

            await _until("the rented replica is drained and torn down", lambda: new.state == "removed", 30)
            assert first.state == "active"  # at the minimum: the original host stays
            record = await s.provisioner.records.get(new.id)
            assert record is not None and record.state == "removed"
            kinds = [(e.kind, e.subject) for e in s.events.since(0, 5000) if e.kind.startswith("autoscale.scale")]
            assert kinds == [("autoscale.scale_up", MODEL), ("autoscale.scale_down", MODEL)]
            ups = [d for d in s.autoscaler.recent if d.action == "scale_up"]
            assert ups[0].reason.startswith(f"{MODEL}: utilization") and "rent Local" in ups[0].reason
        finally:
            await fleet.stop()
    assert time.monotonic() - start < LIMIT_S + 30
