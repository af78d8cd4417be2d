"""The Models view's price and autoscaler keys, driven by keys (App.run_test) against a real router
on loopback: `p` pins and unpins, `m` sets min/max replicas, `a` turns the autoscaler off and on
for a model, each confirmed; the effects are read back through the admin API. The detail shows
why the price moved; a backend without those routes shows N/A."""

from __future__ import annotations

import pytest

from backend.settings import AutoscalerSettings
from console.app import TokenmillApp
from console.client import AdminClient
from console.widgets.confirm import ConfirmScreen
from console.widgets.help import HelpScreen
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen
from hostkit import protocol
from tests.console.test_pilot import MODEL, OTHER, SIZE, admin_get, goto, make_app, rendered_text, wait_for
from tests.router_harness import router_settings, running_router

UNSERVED = "phi-4"


@pytest.fixture
async def router(tmp_path):
    # The autoscaler on (its first decision is an interval away: none is made during a test).
    async with running_router(router_settings(tmp_path, autoscaler=AutoscalerSettings(enabled=True))) as r:
        await r.add_host("rig-a", [MODEL, OTHER])
        yield r


@pytest.fixture
async def router_autoscaler_off(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER])
        yield r


async def pricing_of(router, model: str) -> dict:
    return next(m for m in (await admin_get(router, "/pricing"))["models"] if m["model"] == model)


async def scaling_of(router, model: str) -> dict:
    """The model's entry (empty while the autoscaler does not look after it)."""
    return next((m for m in (await admin_get(router, "/autoscaler"))["models"] if m["model"] == model), {})


def cell(app, column: str) -> str:
    """The cell of the (only) row shown under `column`."""
    labels = [str(c.label) for c in app.view.table.columns.values()]
    return str(app.view.table.get_row_at(0)[labels.index(column)])


async def select(pilot, model: str) -> None:
    await pilot.press("slash", *model, "enter")  # the filter puts the cursor on it
    await wait_for(pilot, lambda: [str(pilot.app.view.table.get_row_at(i)[0])
                                   for i in range(pilot.app.view.table.row_count)] == [model])


async def answer(pilot, text: str) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
    app.screen.query_one("#value").value = ""
    await pilot.press(*text, "enter")


async def confirm(pilot) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press("y")


def notes(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def test_p_pins_the_price_then_unpins_it(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        assert cell(app, "trend") == "= dyn"
        await pilot.press("p")
        await answer(pilot, "0.2,abc")
        assert isinstance(app.screen, PromptScreen)  # refused, still asking
        assert "prompt,completion" in str(app.screen.query_one("#error").render())
        await answer(pilot, "0.2,0.45")
        await confirm(pilot)

        async def pinned():
            p = await pricing_of(router, MODEL)
            return p["pinned"] and (p["prompt_per_mtok_nano"], p["completion_per_mtok_nano"]) == (
                200_000_000, 450_000_000)

        await wait_for(pilot, pinned)
        await wait_for(pilot, lambda: cell(app, "trend").endswith("pin") and cell(app, "prompt/1M") == "$0.2000")
        # Pinned: `p` asks to unpin (no price to enter).
        await pilot.press("p")
        await confirm(pilot)

        async def dynamic():
            p = await pricing_of(router, MODEL)
            return not p["pinned"] and p["dynamic"]

        await wait_for(pilot, dynamic)
        await wait_for(pilot, lambda: cell(app, "trend").endswith("dyn"))


async def test_a_price_the_backend_refuses_shows_its_message_then_enter_alone_pins_the_price_now(router):
    before = await pricing_of(router, OTHER)
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, OTHER)
        await pilot.press("p")
        await answer(pilot, "0,0.3")  # well formed here; the backend wants a pinned price above zero
        await confirm(pilot)
        await wait_for(pilot, lambda: "pin price failed" in notes(app))
        assert "prompt_usd" in notes(app)
        assert not (await pricing_of(router, OTHER))["pinned"]
        await pilot.press("p")
        await answer(pilot, "")  # Enter alone: at the price it has
        await confirm(pilot)

        async def pinned():
            return (await pricing_of(router, OTHER))["pinned"]

        await wait_for(pilot, pinned)
    after = await pricing_of(router, OTHER)
    assert (after["prompt_per_mtok_nano"], after["completion_per_mtok_nano"]) == (
        before["prompt_per_mtok_nano"], before["completion_per_mtok_nano"])


async def test_m_sets_min_and_max_then_back_to_the_defaults(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        await pilot.press("m")
        await answer(pilot, "3,2")
        assert "min must not be more than max" in str(app.screen.query_one("#error").render())
        await answer(pilot, "2,3")
        await confirm(pilot)

        async def limited():
            s = await scaling_of(router, MODEL)
            return (s["min_replicas"], s["max_replicas"], s["limits_overridden"]) == (2, 3, True)

        await wait_for(pilot, limited)
        # One replica, a minimum of two: it wants one more at once.
        await wait_for(pilot, lambda: cell(app, "reps") == "1/2" and cell(app, "next") == "+1 now")
        await pilot.press("m")
        await answer(pilot, "")  # empty: the [autoscaler] defaults
        await confirm(pilot)

        async def defaults():
            s = await scaling_of(router, MODEL)
            return (s["min_replicas"], s["max_replicas"], s["limits_overridden"]) == (1, 4, False)

        await wait_for(pilot, defaults)
        await wait_for(pilot, lambda: cell(app, "reps") == "1/1" and cell(app, "next") == "hold")
        # A model nobody serves is not looked after until it has limits of its own.
        await pilot.press("escape")
        await select(pilot, UNSERVED)
        assert (cell(app, "reps"), cell(app, "next")) == ("0/-", "-")
        assert await scaling_of(router, UNSERVED) == {}
        await pilot.press("m")
        await answer(pilot, "0,2")
        await confirm(pilot)

        async def looked_after():
            s = await scaling_of(router, UNSERVED)
            return (s.get("min_replicas"), s.get("max_replicas")) == (0, 2)

        await wait_for(pilot, looked_after)
        await wait_for(pilot, lambda: cell(app, "reps") == "0/0" and cell(app, "next") == "hold")


async def test_a_turns_the_autoscaler_off_for_the_model_then_on(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        await wait_for(pilot, lambda: cell(app, "next") == "hold")
        await pilot.press("a")
        await confirm(pilot)

        async def enabled() -> bool:
            return (await scaling_of(router, MODEL))["enabled"]

        await wait_for(pilot, lambda: _not(enabled()))
        await wait_for(pilot, lambda: cell(app, "next") == "off")
        assert (await scaling_of(router, OTHER))["enabled"]  # only that model
        await pilot.press("a")
        await confirm(pilot)
        await wait_for(pilot, enabled)


async def _not(result) -> bool:
    return not await result

async def test_a_when_the_autoscaler_is_off_altogether_sets_the_models_own_switch(router_autoscaler_off):
    router = router_autoscaler_off
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        await wait_for(pilot, lambda: cell(app, "next") == "off")
        await pilot.press("a")  # the model's own switch is on (the default): `a` turns it off, and says
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # the autoscaler is off altogether
        assert "off altogether" in " ".join(str(w.render()) for w in app.screen.query("Static"))
        await pilot.press("y")

        async def said_off():
            return any(e["kind"] == "autoscale.limits" and e["subject"] == MODEL and "scaling off" in e["message"]
                       for e in await admin_get(router, "/events"))

        await wait_for(pilot, said_off)


async def test_readonly_refuses_pin_min_max_and_autoscaler(router):
    app = make_app(router, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        shown = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert not shown & set("pma")
        for key in "pma":
            await pilot.press(key)
            await pilot.pause(0.05)
            assert not isinstance(app.screen, ConfirmScreen | PromptScreen | PickScreen), key
        await pilot.press("question_mark")  # `?` lists them, marked disabled
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        listed = " ".join(str(w.render()) for w in app.screen.query("Static"))
        assert all(k in listed for k in ("Pin/unpin price", "Min/max", "Autoscale", "read-only: disabled"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("enter")  # and in the detail
        await wait_for(pilot, lambda: app.view.detail_key == MODEL)
        for key in "pma":
            await pilot.press(key)
            await pilot.pause(0.05)
            assert not isinstance(app.screen, ConfirmScreen | PromptScreen | PickScreen), key
    assert not (await pricing_of(router, MODEL))["pinned"]
    s = await scaling_of(router, MODEL)
    assert s["enabled"] and not s["limits_overridden"]


async def test_the_detail_shows_why_the_price_moved(router):
    # One repricing by the real engine: the model is served and its engine reports little load,
    # so its price comes down from the list price, with each factor's part.
    for rep in router.services.fleet.replicas(MODEL):
        rep.metrics = protocol.EngineMetrics(kv_cache_usage_perc=0.05, max_num_seqs=8)
    router.services.load.sample()
    await router.services.pricing.update()
    moved = await pricing_of(router, MODEL)
    assert moved["last_change"] is not None and moved["last_change"]["source"] == "engine"
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        assert cell(app, "trend") == {"up": "▲", "down": "▼", "flat": "="}[moved["trend"]] + " dyn"
        await pilot.press("enter")
        price = app.view.query_one("#detail-price")
        await wait_for(pilot, lambda: "factor" in rendered_text(price))
        text = " ".join(rendered_text(price).split())
        assert moved["last_change"]["explanation"][:60] in text
        assert "utilization" in text and "step_limit" in text and "dynamic" in text
        history = " ".join(rendered_text(app.view.query_one("#detail-history")).split())
        assert "first price" in history and "engine" in history  # the list price, then the change
        scaling = rendered_text(app.view.query_one("#detail-scaling"))
        assert "replicas have 1, want 1" in scaling and "min 1, max 4" in scaling


class NoPricingClient(AdminClient):
    """A backend from before pricing and the autoscaler: their routes answer 404 (real requests to
    paths the real router does not have)."""

    async def pricing(self):
        return await self._call("GET", "/pricing-gone", dict)

    async def autoscaler(self):
        return await self._call("GET", "/autoscaler-gone", dict)

    async def model_prices(self, model_id, from_us=None, to_us=None):
        return await self._call("GET", f"/models/{model_id}/prices-gone", dict)


async def test_a_backend_without_pricing_shows_na(router):
    app = TokenmillApp(NoPricingClient(router.url, router.services.admin_token), refresh_s=0.2, owns_api=True)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        assert (cell(app, "trend"), cell(app, "reps"), cell(app, "next")) == ("N/A", "1/N/A", "N/A")
        assert cell(app, "prompt/1M").startswith("$")  # the model's price as /admin/models gives it
        await pilot.press("enter")
        price = app.view.query_one("#detail-price")
        await wait_for(pilot, lambda: "N/A" in rendered_text(price))
        assert "N/A" in rendered_text(app.view.query_one("#detail-scaling"))
        await pilot.press("p")
        await wait_for(pilot, lambda: "no dynamic pricing" in notes(app))
        assert not isinstance(app.screen, PromptScreen)
