"""The live projections agree with the ledger: a real router on loopback, real requests through
it with the OpenAI SDK at fixed instants (yesterday, earlier today, within the last hour), a
rented host with a GPU cost and a community host with a payout share. The so-far figures equal
what the clients' balances lost and the community host's payable gained; the projected ones equal
so far + rate x time left computed here from those balances; the break-even comes from the
capacity model at the price and mix the ledger shows."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import msgspec
import openai
import pytest

from backend.catalogue.capacity import break_even_utilization, replica_capacity, revenue_per_s_at_full
from backend.ledger import chart
from backend.metrics.load import DEFAULT_SLOTS
from backend.metrics.projections import month_bounds
from backend.runtime.clock import set_fixed_clock
from backend.settings import PricingSettings
from console.client import AdminClient
from hostkit import protocol
from hostkit.sim.engine import start_sim_engine
from tests.router_harness import FAST, SimHost, router_settings, running_router

RENTED_MODEL = "llama-3.1-8b-instruct"  # on an RTX 4090 rented at $0.90/h
COMMUNITY_MODEL = "qwen2.5-0.5b-instruct"  # on a community host paid half of each charge
HOUR_US = 3_600_000_000
MIN_US = 60_000_000


def _us(*args: int) -> int:
    return (dt.datetime(*args, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


STARTED = _us(2030, 3, 9, 20)  # the backend starts the evening before
YESTERDAY = _us(2030, 3, 9, 22)  # this month, not today
EARLIER = _us(2030, 3, 10, 8, 30)  # today, before the last hour
RECENT = _us(2030, 3, 10, 9, 30)  # within the last hour
NOW = _us(2030, 3, 10, 10)
DAY_START = _us(2030, 3, 10)


@dataclass
class TypedHost(SimHost):
    """A simulated host whose agent reports its GPU type, as a real one reads it from NVML."""

    gpu_type: str | None = None

    async def register(self) -> None:
        body = protocol.Register(name=self.name, models=self._served(), agent_version="test", gpu_type=self.gpu_type,
                                 checks=self._check_results(), engine_key=self.engine_key)
        r = await self.router.http.post("/hosts/register", content=msgspec.json.encode(body),
                                        headers={"Authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        self.task = asyncio.create_task(self._beat())


@pytest.fixture
def fixed_clock():
    yield set_fixed_clock
    set_fixed_clock(None)


async def test_projections_agree_with_the_ledger(tmp_path, fixed_clock):
    fixed_clock(STARTED)
    settings = router_settings(tmp_path, pricing=PricingSettings(enabled=False), profit_target_daily_usd="5")
    async with running_router(settings) as router:
        r = await router.http.post("/admin/hosts", headers=router.admin, json={
            "name": "rig-r", "provider": "runpod", "cost_per_hour_usd": "0.90"})
        r.raise_for_status()
        enrolled = r.json()
        engine = await start_sim_engine([RENTED_MODEL], timing=FAST)
        rented = TypedHost(router, "rig-r", enrolled["token"], enrolled["host"]["id"], engine, [RENTED_MODEL],
                           gpu_type="rtx4090")
        await rented.register()
        router.hosts.append(rented)
        community = await router.add_host("garage", [COMMUNITY_MODEL], payout_share_bps=5000)
        meter = router.services.metrics.meter
        await meter.tick()  # both hosts' stretches open at STARTED

        client_id, secret = await router.client_with_key("acme", "50.00")
        sdk = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=secret, max_retries=0)
        ledger = router.services.ledger

        def spent() -> int:
            return 50_000_000_000 - ledger.account(chart.client_account(client_id)).balance

        def paid() -> int:
            return ledger.account(chart.host_account(community.host_id)).balance

        # (revenue, payouts) each batch of requests brought, read from the accounts after it.
        batches = []
        for at, n in ((YESTERDAY, 2), (EARLIER, 3), (RECENT, 4)):
            fixed_clock(at)
            before = spent(), paid()
            for i in range(n):
                for model in (RENTED_MODEL, COMMUNITY_MODEL):
                    await sdk.chat.completions.create(model=model, max_tokens=5 + i,
                                                      messages=[{"role": "user", "content": "hello " * (3 + i)}])
            batches.append((spent() - before[0], paid() - before[1]))
        await sdk.close()
        fixed_clock(NOW)
        await meter.tick()  # the stretches reach NOW

        api = AdminClient(router.url, router.services.admin_token)
        p = await api.projections()
        usage = {u.group: u for u in await api.usage("model", DAY_START, NOW + 1)}
        prices = {m.id: m for m in await api.models()}
        await api.aclose()

    (rev_y, pay_y), (rev_e, pay_e), (rev_r, pay_r) = batches
    assert rev_y and rev_e and rev_r and pay_y and pay_e and pay_r
    rate_per_h = 900_000_000

    # Today so far: the ledger's, to the nano-dollar; the GPU cost: 10 h of the rented host's rate.
    day = p.day
    assert (day.since_us, day.until_us, day.now_us) == (DAY_START, DAY_START + 24 * HOUR_US, NOW)
    assert day.revenue_nano == rev_e + rev_r
    assert day.payouts_nano == pay_e + pay_r
    assert day.gpu_cost_nano == 10 * rate_per_h
    assert day.profit_nano == rev_e + rev_r - pay_e - pay_r - 10 * rate_per_h
    # Projected: the last hour's revenue and payouts, and the hosts' rate now, for the 14 h left.
    assert day.basis == "last_hour" and day.observed_s == 3600 and day.left_s == 14 * 3600
    assert day.projected_revenue_nano == rev_e + rev_r + rev_r * 14
    assert day.projected_payouts_nano == pay_e + pay_r + pay_r * 14
    assert day.projected_gpu_cost_nano == 24 * rate_per_h
    assert day.projected_profit_nano == (day.projected_revenue_nano - day.projected_payouts_nano
                                         - day.projected_gpu_cost_nano)

    # The month so far: yesterday too; observed since the backend started (14 h), projected at that average.
    month = p.month
    month_start, month_end = month_bounds(NOW)
    assert (month.since_us, month.until_us) == (_us(2030, 3, 1), _us(2030, 4, 1)) == (month_start, month_end)
    revenue, payouts, cost = rev_y + rev_e + rev_r, pay_y + pay_e + pay_r, 14 * rate_per_h
    assert (month.revenue_nano, month.payouts_nano, month.gpu_cost_nano) == (revenue, payouts, cost)
    assert month.basis == "period_average" and month.rate_since_us == STARTED and month.observed_s == 14 * 3600
    left, seen = month_end - NOW, NOW - STARTED
    assert month.projected_revenue_nano == revenue + revenue * left // seen
    assert month.projected_payouts_nano == payouts + payouts * left // seen
    assert month.projected_gpu_cost_nano == cost + cost * left // seen
    assert month.projected_profit_nano == (month.projected_revenue_nano - month.projected_payouts_nano
                                           - month.projected_gpu_cost_nano)

    # Progress against the $5/day target.
    assert p.profit_target_daily_nano == 5_000_000_000
    assert p.target_progress == round(day.profit_nano / 5_000_000_000, 4)
    assert p.target_projected == round(day.projected_profit_nano / 5_000_000_000, 4)

    # Break-even of the rented model: the capacity model on an RTX 4090 (the engine reports no slots:
    # vLLM's default), its list price, today's mix from the ledger.
    be = {m.model: m for m in p.models}
    assert set(be) == {RENTED_MODEL, COMMUNITY_MODEL}
    llama, u = be[RENTED_MODEL], usage[RENTED_MODEL]
    mean_p, mean_c = u.prompt_tokens / u.requests, u.completion_tokens / u.requests
    assert llama.mix_from == "today" and llama.mean_prompt_tokens == round(mean_p, 1)
    assert (llama.prompt_per_mtok_nano, llama.completion_per_mtok_nano) == (
        prices[RENTED_MODEL].price_prompt_per_mtok_nano, prices[RENTED_MODEL].price_completion_per_mtok_nano)
    catalogue = router.services.catalogue
    cap = replica_capacity(catalogue.model(RENTED_MODEL), catalogue.gpu_by_id["rtx4090"], 1, slots=DEFAULT_SLOTS)
    full = revenue_per_s_at_full(cap, mean_p, mean_c, llama.prompt_per_mtok_nano, llama.completion_per_mtok_nano)
    assert llama.gpu_cost_per_h_nano == rate_per_h and llama.note == ""
    assert llama.break_even_utilization == round(break_even_utilization(rate_per_h, full), 4)
    assert 0 < llama.break_even_utilization
    assert llama.utilization is None  # its engine reports no load
    # The community host reports no GPU type: no capacity, so no break-even, and the reason why.
    qwen = be[COMMUNITY_MODEL]
    assert qwen.gpu_cost_per_h_nano == 0 and qwen.break_even_utilization is None and "GPU" in qwen.note


async def test_no_target_and_nothing_served(tmp_path, fixed_clock):
    fixed_clock(NOW)
    async with running_router(router_settings(tmp_path)) as router:
        api = AdminClient(router.url, router.services.admin_token)
        p = await api.projections()
        await api.aclose()
    assert p.profit_target_daily_nano == 0 and p.target_progress is None and p.target_projected is None
    assert p.models == []
    # Nothing observed yet: the projection adds nothing, and says it rests on no time at all.
    assert p.day.observed_s == 0 and p.day.projected_profit_nano == p.day.profit_nano == 0
    assert p.month.observed_s == 0 and p.month.projected_revenue_nano == 0
