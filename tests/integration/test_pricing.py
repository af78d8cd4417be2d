"""Dynamic pricing over real HTTP: a real router on loopback, real SQLite, simulated engines.

The load the engine prices from is set by the test (FixedLoad stands in for the LoadTracker: real
engines cannot be made 90 % busy on demand here); everything after it is the production path: the
supervised loop or a direct `update()`, rows in price_change, events, the admin API, /v1/models,
quotes snapshotted per request and the ledger's settlement with the host's share."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from backend.ledger.queries import check_invariants
from backend.ledger.tables import UsageEvent
from backend.metrics.load import ModelLoad
from backend.money import cost_of_tokens
from backend.pricing.tables import PriceChange
from hostkit.sim.engine import SimTiming
from tests.router_harness import openai_client, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"  # market $0.10-$0.20 / $0.20-$0.40 per 1M tokens, list $0.14 / $0.28
CENT = 10_000_000  # $0.01 in nano-USD
LIST = (14 * CENT, 28 * CENT)
# Under 0.9 load the target is $0.17 / $0.34 (0.7 of the range); each interval moves 5 % at most.
CLIMB = [(147_000_000, 294_000_000), (154_350_000, 308_700_000), (162_067_500, 324_135_000)]


class FixedLoad:
    """A LoadTracker for the pricing engine: the utilization the test sets for a model, else the real one."""

    def __init__(self, real) -> None:
        self.real = real
        self.utilization: dict[str, float] = {}

    def load(self, model: str, window_s: float) -> ModelLoad:
        u = self.utilization.get(model)
        if u is None:
            return self.real.load(model, window_s)
        return ModelLoad(model, window_s, 10, 1, u, 0.0, 0.0, None)

    def routable(self, model: str):
        return self.real.routable(model)


def _settings(tmp_path, **pricing):
    # No peak hours: the real clock's hour must not change the figures.
    return router_settings(tmp_path, pricing={"interval_s": 3600, "peak_hours": [], **pricing})


def _driven(router, utilization: float) -> FixedLoad:
    fixed = FixedLoad(router.services.load)
    fixed.utilization[MODEL] = utilization
    router.services.pricing.load_tracker = fixed
    return fixed


def _quote(router) -> tuple[int, int]:
    s = router.services
    q = s.pricer.quote(s.catalogue.model(MODEL))
    return q.prompt_per_mtok, q.completion_per_mtok


async def _rows(router) -> list[PriceChange]:
    t = PriceChange.__table__
    async with router.services.engine.connect() as conn:
        return list((await conn.execute(select(t).where(t.c.model == MODEL).order_by(t.c.at_us, t.c.id))).all())


async def _events(router, prefix: str = "price.") -> list[dict]:
    r = await router.http.get("/admin/events", headers=router.admin)
    return [e for e in r.json() if e["kind"].startswith(prefix)]


@pytest.fixture
async def router(tmp_path):
    async with running_router(_settings(tmp_path)) as r:
        yield r


async def test_load_drives_the_price_up_step_by_step_and_every_change_is_on_record(router):
    _driven(router, 0.9)
    for step in CLIMB:
        await router.services.pricing.update()
        assert _quote(router) == step
    rows = await _rows(router)
    assert [r.source for r in rows] == ["start", "engine", "engine", "engine"]
    assert (rows[0].prompt_per_mtok, rows[0].completion_per_mtok) == LIST  # the price it had until then
    # A model nobody serves and nobody asks for has nothing to price from: it keeps its price.
    other = router.services.catalogue.model("qwen2.5-0.5b-instruct")
    assert router.services.pricing.quote(other.id).prompt_per_mtok == other.price.prompt
    assert [(r.prompt_per_mtok, r.completion_per_mtok) for r in rows[1:]] == CLIMB
    assert "load 0.90" in rows[1].explanation and "+5.0 %" in rows[1].explanation

    events = await _events(router)
    assert [e["kind"] for e in events] == ["price.changed"] * 3
    assert all(e["subject"] == MODEL and "load 0.90 vs target 0.60" in e["message"] for e in events)

    r = await router.http.get(f"/admin/models/{MODEL}/prices", headers=router.admin)
    assert r.status_code == 200
    h = r.json()
    assert [c["source"] for c in h["changes"]] == ["start", "engine", "engine", "engine"]
    last = h["changes"][-1]
    assert (last["prompt_per_mtok_nano"], last["completion_per_mtok_nano"]) == CLIMB[-1]
    assert last["prompt_usd"] == "$0.162068"  # six places for people; the nano figure is exact
    factors = {f["name"]: f for f in last["factors"]}
    assert set(factors) == {"base", "utilization", "demand", "peak", "range", "step_limit", "hysteresis"}
    assert factors["utilization"]["prompt_delta_nano"] == 3 * CENT  # 0.3 above target x the $0.10 range
    assert sum(f["prompt_delta_nano"] for f in last["factors"]) == CLIMB[2][0] - CLIMB[1][0]

    # The window: the price in force at `from` first, then the changes after it.
    second_us = h["changes"][2]["at_us"]
    r = await router.http.get(f"/admin/models/{MODEL}/prices", params={"from": second_us}, headers=router.admin)
    assert [c["prompt_per_mtok_nano"] for c in r.json()["changes"]] == [CLIMB[1][0], CLIMB[2][0]]
    r = await router.http.get(f"/admin/models/{MODEL}/prices", params={"from": "2000-01-01T00:00:00Z",
                                                                       "to": "2000-01-02T00:00:00"},
                              headers=router.admin)
    assert r.status_code == 200 and r.json()["changes"] == [] and r.json()["from_us"] == 946_684_800_000_000

    r = await router.http.get("/admin/pricing", headers=router.admin)
    assert r.status_code == 200
    p = r.json()
    assert p["enabled"] is True and p["peak_now"] is False and p["target_utilization"] == 0.6
    m = {x["model"]: x for x in p["models"]}[MODEL]
    assert m["dynamic"] is True and m["pinned"] is False and m["trend"] == "up"
    assert (m["prompt_per_mtok_nano"], m["completion_per_mtok_nano"]) == CLIMB[-1]
    assert (m["list_prompt_per_mtok_nano"], m["floor_prompt_per_mtok_nano"], m["ceiling_prompt_per_mtok_nano"]) \
        == (14 * CENT, 10 * CENT, 20 * CENT)
    assert m["load"] == pytest.approx(0.9) and m["last_change"]["source"] == "engine"
    assert m["next_update_us"] is not None

    # The admin model list says what a request is quoted (/v1/models: the next test).
    r = await router.http.get("/admin/models", headers=router.admin)
    out = {x["id"]: x for x in r.json()}[MODEL]
    assert (out["price_prompt_per_mtok_nano"], out["price_completion_per_mtok_nano"]) == CLIMB[-1]


async def test_v1_models_and_charges_follow_the_price_a_request_in_flight_keeps_its_own(tmp_path):
    async with running_router(_settings(tmp_path)) as router:
        # Slow enough (40 tokens at 40 tok/s) that the price changes while one request streams.
        await router.add_host("rig", [MODEL], timing=SimTiming(speed=1.0, decode_tps=40.0), payout_share_bps=7000)
        async with openai_client(router) as sdk:
            [card] = (await sdk.models.list()).data
            assert card.pricing == {"prompt": "0.00000014", "completion": "0.00000028"}

            stream = await sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=40, stream=True,
                stream_options={"include_usage": True})
            it = stream.__aiter__()
            await it.__anext__()  # under way: its quote is taken
            _driven(router, 0.9)
            await router.services.pricing.update()
            assert _quote(router) == CLIMB[0]
            [card] = (await sdk.models.list()).data
            assert card.pricing == {"prompt": "0.000000147", "completion": "0.000000294"}
            assert (await sdk.models.retrieve(MODEL)).pricing == card.pricing
            chunks = [c async for c in it]
            usage = chunks[-1].usage

            r = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=5)
            await router.services.ledger.flush()
            async with router.services.engine.connect() as conn:
                rows = (await conn.execute(select(UsageEvent.__table__).order_by(UsageEvent.__table__.c.id))).all()
                assert await check_invariants(conn) == []
        first, second = rows
        changed_us = (await _rows(router))[-1].at_us
        assert first.started_us < changed_us < first.finished_us  # it was in flight when the price changed
        # ...and paid the price it was quoted when it started;
        assert (first.price_prompt_per_mtok, first.price_completion_per_mtok) == LIST
        assert first.charged == cost_of_tokens(usage.prompt_tokens, LIST[0]) + \
            cost_of_tokens(usage.completion_tokens, LIST[1])
        # the next one pays the new price, and the host earns its share of what each paid.
        assert (second.price_prompt_per_mtok, second.price_completion_per_mtok) == CLIMB[0]
        assert second.charged == cost_of_tokens(r.usage.prompt_tokens, CLIMB[0][0]) + \
            cost_of_tokens(r.usage.completion_tokens, CLIMB[0][1])
        assert second.charged > cost_of_tokens(r.usage.prompt_tokens, LIST[0]) + \
            cost_of_tokens(r.usage.completion_tokens, LIST[1])
        for row in (first, second):
            assert row.host_share == row.charged * 7000 // 10_000
        host = router.services.fleet.hosts()[0]
        assert router.services.ledger.account(host.payable_account).balance == first.host_share + second.host_share


async def test_the_supervised_loop_reprices_by_itself(tmp_path):
    async with running_router(_settings(tmp_path, interval_s=0.05)) as router:
        r = await router.http.get("/admin/loops", headers=router.admin)
        loop = {x["name"]: x for x in r.json()}["pricing.update"]
        assert loop["after"] == ["metrics.load"] and loop["state"] == "running"
        _driven(router, 0.9)
        async with asyncio.timeout(10):
            while _quote(router) != (17 * CENT, 34 * CENT):  # it walks to the target, then stays
                await asyncio.sleep(0.02)
        rows = await _rows(router)
        assert [r.source for r in rows] == ["start"] + ["engine"] * 4
        await asyncio.sleep(0.2)  # several more runs at the same load: no more changes
        assert len(await _rows(router)) == 5


async def test_a_pin_holds_the_price_until_unpinned(router):
    _driven(router, 0.9)
    url = f"/admin/models/{MODEL}/pricing"
    r = await router.http.put(url, json={"pinned": True, "prompt_usd": "0.12"}, headers=router.admin)
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["pinned"] is True and m["dynamic"] is False
    assert (m["prompt_per_mtok_nano"], m["completion_per_mtok_nano"]) == (12 * CENT, LIST[1])  # the other side kept
    for _ in range(3):
        await router.services.pricing.update()
    assert _quote(router) == (12 * CENT, LIST[1])
    r = await router.http.get("/admin/pricing", headers=router.admin)
    assert {x["model"]: x for x in r.json()["models"]}[MODEL]["pinned"] is True

    r = await router.http.put(url, json={"prompt_usd": "0.13", "completion_usd": "0.29"}, headers=router.admin)
    assert r.status_code == 200 and _quote(router) == (13 * CENT, 29 * CENT)  # a pinned model takes new figures

    r = await router.http.put(url, json={"pinned": False}, headers=router.admin)
    assert r.status_code == 200 and r.json()["dynamic"] is True
    assert _quote(router) == (13 * CENT, 29 * CENT)  # dynamic again from where it is
    await router.services.pricing.update()
    assert _quote(router) == (13 * CENT + 13 * CENT // 20, 29 * CENT + 29 * CENT // 20)
    assert [r.source for r in await _rows(router)] == ["start", "pin", "pin", "unpin", "engine"]
    assert [e["kind"] for e in await _events(router)] == ["price.pinned", "price.pinned", "price.unpinned",
                                                          "price.changed"]


async def test_an_operator_range_bounds_the_price_and_empty_restores_the_market(router):
    url = f"/admin/models/{MODEL}/pricing"
    r = await router.http.put(url, json={"floor_prompt_usd": "0.15", "ceiling_prompt_usd": "0.16"},
                              headers=router.admin)
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["range_overridden"] is True and m["floor_prompt_per_mtok_nano"] == 15 * CENT
    assert m["prompt_per_mtok_nano"] == 15 * CENT  # brought into the new range at once
    _driven(router, 0.0)
    await router.services.pricing.update()
    assert _quote(router)[0] == 15 * CENT  # idle, yet not under the operator's floor
    r = await router.http.put(url, json={"floor_prompt_usd": "", "ceiling_prompt_usd": ""}, headers=router.admin)
    assert r.json()["range_overridden"] is False and r.json()["floor_prompt_per_mtok_nano"] == 10 * CENT
    assert [e["kind"] for e in await _events(router)][-1] == "price.range"


@pytest.mark.parametrize(("body", "param"), [
    ({"floor_prompt_usd": "0.30"}, "floor_prompt_usd"),  # above the market ceiling, $0.20
    ({"ceiling_completion_usd": "0.10"}, "ceiling_completion_usd"),  # under the market floor, $0.20
    ({"pinned": True, "prompt_usd": "0"}, "prompt_usd"),
    ({"pinned": True, "completion_usd": "-1"}, "completion_usd"),
    ({"pinned": True, "prompt_usd": "20000"}, "prompt_usd"),  # over $10,000 per 1M tokens
    ({"pinned": True, "prompt_usd": "0.1234567891"}, "prompt_usd"),  # finer than a nano-USD
    ({"prompt_usd": "0.12"}, "prompt_usd"),  # a price only with a pin
    ({"floor_prompt_usd": "cheap"}, "floor_prompt_usd"),
    ({"pinned": 0}, "pinned"),  # held to its type: Litestar alone would take 0 for false
    ({"floor_prompt_usd": 0.15}, "floor_prompt_usd"),  # money is never a float
])
async def test_bad_input_is_refused_naming_the_field(router, body, param):
    r = await router.http.put(f"/admin/models/{MODEL}/pricing", json=body, headers=router.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert _quote(router) == LIST and await _rows(router) == []


async def test_unknown_models_and_bad_windows(router):
    r = await router.http.put("/admin/models/nope/pricing", json={"pinned": True}, headers=router.admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await router.http.get("/admin/models/nope/prices", headers=router.admin)
    assert r.status_code == 404
    for params, param in (({"from": 20, "to": 10}, "from"), ({"from": "yesterday"}, "from"),
                          ({"to": "99999999999999999999"}, "to")):
        r = await router.http.get(f"/admin/models/{MODEL}/prices", params=params, headers=router.admin)
        assert r.status_code == 400 and r.json()["error"]["param"] == param
    r = await router.http.put(f"/admin/models/{MODEL}/pricing", json={"pinned": True}, headers={})
    assert r.status_code == 401


async def test_a_restart_keeps_the_price_and_pricing_off_brings_back_the_list_price(tmp_path):
    async with running_router(_settings(tmp_path)) as router:
        _driven(router, 0.9)
        for _ in CLIMB:
            await router.services.pricing.update()
    async with running_router(_settings(tmp_path)) as router:
        assert _quote(router) == CLIMB[-1]
        r = await router.http.get("/admin/pricing", headers=router.admin)
        m = {x["model"]: x for x in r.json()["models"]}[MODEL]
        assert m["trend"] == "up" and m["last_change"]["source"] == "engine"
        # Turned off while running: back to the list price at the next run.
        router.services.settings.pricing.enabled = False
        _driven(router, 0.9)
        await router.services.pricing.update()
        assert _quote(router) == LIST
        assert (await _rows(router))[-1].source == "list"
        router.services.settings.pricing.enabled = True
        await router.services.pricing.update()
        assert _quote(router) == CLIMB[0]
    async with running_router(_settings(tmp_path, enabled=False)) as router:
        assert _quote(router) == LIST  # off from the start: the list price before any request
        r = await router.http.get("/admin/pricing", headers=router.admin)
        assert r.json()["enabled"] is False
        assert {x["model"]: x for x in r.json()["models"]}[MODEL]["dynamic"] is False
        # A pin still holds with pricing off.
        r = await router.http.put(f"/admin/models/{MODEL}/pricing", json={"pinned": True, "prompt_usd": "0.5"},
                                  headers=router.admin)
        assert r.status_code == 200 and _quote(router) == (50 * CENT, LIST[1])
        await router.services.pricing.update()
        assert _quote(router) == (50 * CENT, LIST[1])


async def test_a_served_model_whose_load_nobody_reports_keeps_its_price(router):
    # Served and asked for, but no engine reports its load and its capacity is unknown (an older
    # agent on a card the catalogue does not know): that is no signal, not a load of 0, so the
    # price must not sink towards the floor.
    fixed = FixedLoad(router.services.load)
    router.services.pricing.load_tracker = fixed
    blind = ModelLoad(MODEL, 300.0, 10, 2, None, 0.0, 500.0, None)
    fixed.load = lambda model, window_s: blind if model == MODEL else fixed.real.load(model, window_s)
    for _ in range(3):
        await router.services.pricing.update()
    assert _quote(router) == LIST
    assert await _rows(router) == []
