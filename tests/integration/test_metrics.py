"""/admin/metrics over real HTTP: live figures agree with the ledger, GPU cost follows the hosts'
connected time, and a restarted router still has the last hour."""

from __future__ import annotations

import openai
import pytest

from backend.metrics.gpu_cost import GpuCostMeter
from hostkit.sim.engine import start_sim_engine
from tests.router_harness import FAST, SimHost, router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
HOUR_US = 3_600_000_000
RATE = 3_600_000_000  # $3.60/h in nano-USD: exactly one nano-USD per microsecond


async def add_rented_host(router, name: str, cost_usd: str = "3.60") -> SimHost:
    r = await router.http.post("/admin/hosts", json={"name": name, "provider": "runpod", "cost_per_hour_usd": cost_usd},
                               headers=router.admin)
    r.raise_for_status()
    enrolled = r.json()
    engine = await start_sim_engine([MODEL], timing=FAST)
    host = SimHost(router, name, enrolled["token"], enrolled["host"]["id"], engine, [MODEL])
    await host.register()
    router.hosts.append(host)
    return host


async def serve(router, n: int) -> None:
    _, secret = await router.client_with_key()
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    for i in range(n):
        if i % 2:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=8)
        else:
            stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                          max_tokens=8, stream=True)
            async for _ in stream:
                pass
    await client.close()


async def metrics(router, **params) -> dict:
    r = await router.http.get("/admin/metrics", params=params, headers=router.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_live_figures_agree_with_the_ledger_and_survive_a_restart(tmp_path):
    settings = router_settings(tmp_path)
    async with running_router(settings) as router:
        await add_rented_host(router, "rented")
        await serve(router, 6)
        m = await metrics(router)
        usage = (await router.http.get("/admin/usage", params={"group_by": "model"}, headers=router.admin)).json()
        assert m["hour"]["requests"] == m["today"]["requests"] == usage[0]["requests"] == 6
        assert m["hour"]["revenue_nano"] == m["today"]["revenue_nano"] == usage[0]["charged_nano"] > 0
        assert m["hour"]["failed"] == 0
        assert 0 < m["hour"]["latency_p50_ms"] <= m["hour"]["latency_p99_ms"]
        assert 0 < m["hour"]["ttft_p50_ms"] <= m["hour"]["latency_p99_ms"]
        series = m["series"]
        assert len(series["requests"]) == 61 and sum(series["requests"]) == 6
        assert sum(series["revenue_nano"]) == m["hour"]["revenue_nano"]
        assert m["gpu_cost_per_h_nano"] == RATE
        rates = {r["model"]: r for r in m["models"]}
        assert rates[MODEL]["requests_per_s"] > 0 and rates[MODEL]["gpu_cost_per_h_nano"] == RATE
        assert rates[MODEL]["profit_per_h_nano"] == (rates[MODEL]["revenue_per_h_nano"]
                                                     - rates[MODEL]["payouts_per_h_nano"] - RATE)
        assert rates["llama-3.1-8b-instruct"]["requests_per_s"] == 0  # served by nobody
        detail = (await router.http.get(f"/admin/models/{MODEL}/metrics", headers=router.admin)).json()
        assert sum(detail["series"]["requests"]) == 6 and detail["rates"]["model"] == MODEL
        before = m["hour"]
    async with running_router(settings) as router:  # a restart replays the last hour
        after = (await metrics(router))["hour"]
        assert (after["requests"], after["revenue_nano"]) == (before["requests"], before["revenue_nano"])
        assert after["latency_p50_ms"] == before["latency_p50_ms"]


async def test_gpu_cost_is_the_connected_time_at_the_hosts_rate(tmp_path):
    settings = router_settings(tmp_path)
    t0 = 1_900_000_000 * 1_000_000
    async with running_router(settings) as router:
        # A meter of its own, ticked by hand at fixed instants in 2030 (the router's own meter
        # ticks on real time and writes stretches in 2026, which these windows do not overlap).
        meter = GpuCostMeter(router.services.engine, router.services.fleet)
        host = await add_rented_host(router, "rented")
        await meter.tick(t0)
        await meter.tick(t0 + HOUR_US // 2)
        assert (await meter.cost(t0, t0 + HOUR_US)) == {host.host_id: RATE // 2}
        await router.http.post(f"/admin/hosts/{host.host_id}/remove", headers=router.admin)
        await meter.tick(t0 + HOUR_US)  # removal ends the stretch: what follows costs nothing
        await meter.tick(t0 + 2 * HOUR_US)
        assert (await meter.cost(t0, t0 + 3 * HOUR_US)) == {host.host_id: RATE}
        assert (await meter.cost(t0 + HOUR_US // 4, t0 + HOUR_US // 2)) == {host.host_id: RATE // 4}
    async with running_router(settings) as router:  # durable: a restart reads the same cost back
        assert (await router.services.metrics.meter.cost(t0, t0 + 3 * HOUR_US)) == {host.host_id: RATE}


@pytest.mark.parametrize("window", [0, 59, 3601])
async def test_rate_window_out_of_range_is_refused(tmp_path, window):
    async with running_router(router_settings(tmp_path)) as router:
        r = await router.http.get("/admin/metrics", params={"rate_window_s": window}, headers=router.admin)
        assert r.status_code == 400 and r.json()["error"]["param"] == "rate_window_s"
        r = await router.http.get("/admin/models/nope/metrics", headers=router.admin)
        assert r.status_code == 404
