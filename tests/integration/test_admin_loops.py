"""GET /admin/loops over real HTTP: every background loop of a running router, under one
supervisor; a loop that crashes is restarted and the operator sees it (its state and an event)."""

from __future__ import annotations

import asyncio

import pytest

from backend.runtime.schedules import Monthly
from tests.router_harness import router_settings, running_router


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


async def test_admin_loops_lists_every_loop_of_the_router(router):
    r = await router.http.get("/admin/loops")
    assert r.status_code == 401
    r = await router.http.get("/admin/loops", headers=router.admin)
    assert r.status_code == 200
    loops = {loop["name"]: loop for loop in r.json()}
    assert set(loops) == {"ledger.hold_expiry", "fleet.health", "metrics.gpu_cost", "metrics.load", "pricing.update",
                          "autoscaler.decide", "billing.invoices", "metrics.gpu_cost_ledger", "billing.payouts"}
    invoices = loops.pop("billing.invoices")  # the one calendar schedule: the monthly invoices
    assert (invoices["kind"], invoices["every"], invoices["state"]) == ("schedule", "monthly on day 2 at 00:00 UTC",
                                                                       "running")
    assert loops["autoscaler.decide"]["after"] == ["metrics.load"]
    assert loops["pricing.update"]["after"] == ["metrics.load"]
    assert [loop["name"] for loop in r.json()].index("fleet.health") < \
        [loop["name"] for loop in r.json()].index("metrics.gpu_cost")  # started after what it needs
    assert loops["metrics.gpu_cost"]["after"] == ["fleet.health"]
    assert loops["metrics.gpu_cost_ledger"]["after"] == ["metrics.gpu_cost"]  # posts what the meter counted
    assert loops["fleet.health"]["every"] == "every 1s"  # the heartbeat interval of these settings
    for loop in loops.values():
        assert loop["kind"] == "every" and loop["state"] == "running"
        assert loop["restarts"] == 0 and loop["last_error"] is None and loop["last_error_us"] is None
        assert loop["next_run_us"] is not None
    # The meter ticks at once: it has run by now, and says when.
    assert loops["metrics.gpu_cost"]["runs"] >= 1
    assert loops["metrics.gpu_cost"]["last_run_us"] >= router.services.started_us


async def test_a_crashing_loop_is_restarted_and_seen(router):
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")

    # Registered on the running router's supervisor, like a capability that comes later.
    router.services.supervisor.every("test.flaky", flaky, 3600, first_run_s=0)
    router.services.supervisor.schedule("test.monthly", _nothing, Monthly(day=2))

    async def seen() -> dict:
        while True:
            r = await router.http.get("/admin/loops", headers=router.admin)
            loop = {x["name"]: x for x in r.json()}["test.flaky"]
            if loop["runs"] == 1:  # restarted after its backoff, and ran clean
                return {x["name"]: x for x in r.json()}
            await asyncio.sleep(0.05)

    loops = await asyncio.wait_for(seen(), 30)
    flaky_loop = loops["test.flaky"]
    assert flaky_loop["restarts"] == 1 and flaky_loop["state"] == "running"
    assert flaky_loop["last_error"] == "RuntimeError: disk full" and flaky_loop["last_error_us"] > 0
    assert loops["test.monthly"]["kind"] == "schedule"
    assert loops["test.monthly"]["every"] == "monthly on day 2 at 00:00 UTC"
    events = (await router.http.get("/admin/events", headers=router.admin)).json()
    restarted = [e for e in events if e["kind"] == "loop.restarted"]
    assert [(e["subject"], e["level"]) for e in restarted] == [("test.flaky", "error")]
    assert restarted[0]["message"] == "RuntimeError: disk full; restarting in 1s"


async def _nothing(scheduled_us: int) -> None:
    return None
