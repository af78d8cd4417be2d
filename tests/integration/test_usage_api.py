"""GET /v1/usage: a client's own usage per model, UTC day or key, against a real router on loopback
(real HTTP; SQLite, and PostgreSQL when TOKENMILL_TEST_DATABASE_URL is set), usage made by real
requests through the openai SDK and by a usage event standing for several requests (a simulation's),
each at a chosen instant (the backend's clock fixed to it, as the console's screenshots fix it)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import openai
import pytest

from backend.api.usage_range import usage_range
from backend.ledger import chart
from backend.ledger.reports import usage_by
from backend.ledger.service import Usage
from backend.runtime.clock import set_fixed_clock, to_us
from backend.wire.errors import ApiError
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-0.5b-instruct"
USD = 1_000_000_000


def at(iso: str) -> None:
    set_fixed_clock(to_us(dt.datetime.fromisoformat(iso)))


@pytest.fixture
async def router(tmp_path, db_url):
    try:
        async with running_router(router_settings(tmp_path, database_url=db_url)) as r:
            await r.add_host("rig-a", [MODEL, OTHER], payout_share_bps=6000)
            yield r
    finally:
        set_fixed_clock(None)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def ask(secret: str, router, model: str, when: str, tokens: int = 4) -> None:
    at(when)
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
        r = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}],
                                              max_tokens=tokens)
    assert r.usage.completion_tokens == tokens


async def seed_simulated(router, client_id: str, when: str, *, requests: int, status: str = "ok") -> int:
    """One usage event standing for `requests` requests, settled through the ledger's API."""
    at(when)
    led = router.services.ledger
    hold = await led.hold(chart.client_account(client_id), chart.REVENUE, USD, code="usage")
    charged = 0 if status == "failed" else 123_456_789
    now = to_us(dt.datetime.fromisoformat(when))
    await led.settle(hold.key, charged=charged, usage=Usage(
        request_id=f"sim-{status}-{requests}", client_id=client_id, model=OTHER,
        prompt_tokens=1_000 if charged else 0, completion_tokens=2_000 if charged else 0,
        price_prompt_per_mtok=20_000_000, price_completion_per_mtok=40_000_000, started_us=now, finished_us=now,
        status=status, requests=requests))
    return charged


@pytest.fixture
async def seeded(router):
    """Client A with two keys and usage on four UTC days (one in October); client B beside it."""
    a_id, a1 = await router.client_with_key("a")
    r = await router.http.post("/v1/me/keys", json={"name": "second"}, headers=bearer(a1))
    a2, a2_id = r.json()["secret"], r.json()["key"]["id"]
    a1_id = router.services.clients.keys(a_id)[0].id
    _, b = await router.client_with_key("b")
    await ask(a1, router, MODEL, "2026-10-31T23:59:59.999999+00:00")
    await ask(a1, router, MODEL, "2026-11-14T23:59:59.500000+00:00")
    await ask(a2, router, OTHER, "2026-11-15T00:00:00+00:00")
    await ask(b, router, MODEL, "2026-11-15T12:00:00+00:00", tokens=9)
    await ask(a2, router, MODEL, "2026-11-16T10:00:00+00:00")
    await ask(a1, router, OTHER, "2026-11-16T10:30:00+00:00")
    await seed_simulated(router, a_id, "2026-11-16T12:00:00+00:00", requests=250)
    await seed_simulated(router, a_id, "2026-11-16T13:00:00+00:00", requests=7, status="failed")
    await router.services.ledger.flush()
    at("2026-11-20T08:00:00+00:00")  # "now": the current month is November 2026
    return {"a": a1, "a_id": a_id, "a1_id": a1_id, "a2_id": a2_id, "b": b}


async def usage(router, secret: str, **params) -> dict:
    r = await router.http.get("/v1/usage", params=params, headers=bearer(secret))
    assert r.status_code == 200, r.text
    body = r.json()
    # Every report's rows sum to its totals.
    for field in ("requests", "failed", "prompt_tokens", "completion_tokens", "charged_nano"):
        assert sum(row[field] for row in body["data"]) == body["total"][field], field
    return body


def by_group(body: dict, field: str = "requests") -> dict:
    return {row["group"]: row[field] for row in body["data"]}


async def test_grouped_three_ways_each_sums_to_the_ledger(router, seeded):
    a = seeded["a"]
    month = await usage(router, a)  # default: the current UTC month, per model
    assert (month["group_by"], month["start"], month["end"]) == (
        "model", "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00")
    assert by_group(month) == {MODEL: 2, OTHER: 2 + 250 + 7}
    assert month["total"]["requests"] == 261 and month["total"]["failed"] == 7
    days = await usage(router, a, group_by="day")
    assert [(r["group"], r["requests"]) for r in days["data"]] == [
        ("2026-11-14", 1), ("2026-11-15", 1), ("2026-11-16", 2 + 257)]
    keys = await usage(router, a, group_by="key")
    assert by_group(keys) == {seeded["a1_id"]: 2, seeded["a2_id"]: 2, None: 257}
    names = {r["group"]: (r["key_name"], r["key_prefix"]) for r in keys["data"]}
    assert names[seeded["a2_id"]][0] == "second" and names[None] == (None, None)
    assert month["total"] == days["total"] == keys["total"]

    # The ledger's figures: what the client's prepaid account was charged, and the admin's report.
    whole = await usage(router, a, start_date="2026-10-01", end_date="2026-11-30", group_by="day")
    spent = 10 * USD - router.services.ledger.account(chart.client_account(seeded["a_id"])).balance
    assert whole["total"]["charged_nano"] == spent > 0
    admin = {r.group: r for r in await usage_by(router.services.engine, "client", whole["start_us"],
                                                 whole["end_us"])}[seeded["a_id"]]
    t = whole["total"]
    assert (t["requests"], t["failed"], t["prompt_tokens"], t["completion_tokens"], t["charged_nano"]) == (
        admin.requests, admin.failed, admin.prompt_tokens, admin.completion_tokens, admin.charged)
    assert Decimal(t["charged_usd"]) * USD == spent  # exact, never rounded

    # Client B sees only its own request.
    b = await usage(router, seeded["b"], group_by="key")
    assert b["total"]["requests"] == 1 and b["total"]["completion_tokens"] == 9


async def test_the_range_bounds(router, seeded):
    a = seeded["a"]

    async def count(**params) -> int:
        return (await usage(router, a, **params))["total"]["requests"]

    assert await count(start_date="2026-11-14", end_date="2026-11-14") == 1  # a bare end date includes its day
    assert await count(start_date="2026-11-14", end_date="2026-11-15T00:00:00Z") == 1  # a timestamp end: exclusive
    assert await count(start_date="2026-11-14", end_date="2026-11-15T00:00:00.000001Z") == 2
    assert await count(start_date="2026-11-15T00:00:00Z", end_date="2026-11-15") == 1  # start inclusive
    assert await count(start_date="2026-11-15T01:00:00+01:00", end_date="2026-11-15T23:00:00-01:00") == 1
    assert await count(start_date="2026-10-31", end_date="2026-10-31") == 1
    assert await count(end_date="2026-10-31") == 1  # from the first of that month
    assert await count(start_date="2026-10-31") == 262  # up to the end of the current month
    one = await usage(router, a, start_date="2026-11-16T10:00:00Z", end_date="2026-11-16T10:00:00.000001Z")
    assert by_group(one) == {MODEL: 1}


@pytest.mark.parametrize(("params", "param"), [
    ({"start_date": "2026-13-01"}, "start_date"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": "2026-11-01T00:00:00"}, "start_date"),  # no offset: refused, not guessed
    ({"start_date": "20261101"}, "start_date"),
    ({"end_date": "2026-11-31"}, "end_date"),
    ({"end_date": "2026-11-01T25:00:00Z"}, "end_date"),
    ({"start_date": "2026-11-10", "end_date": "2026-11-09"}, "end_date"),
    ({"start_date": "2026-11-10T00:00:00Z", "end_date": "2026-11-10T00:00:00Z"}, "end_date"),
    ({"start_date": "2025-01-01", "end_date": "2026-01-02"}, "end_date"),  # 367 days
    ({"start_date": "2020-01-01"}, "start_date"),  # to the end of this month: years
    ({"start_date": "1969-12-31"}, "start_date"),
    ({"group_by": "host"}, "group_by"),
    ({"group_by": "client"}, "group_by"),
])
async def test_bad_input_names_the_parameter(router, seeded, params, param):
    r = await router.http.get("/v1/usage", params=params, headers=bearer(seeded["a"]))
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, "invalid_value")
    assert r.json()["error"]["message"].startswith(param)


async def test_366_days_are_allowed(router, seeded):
    body = await usage(router, seeded["a"], start_date="2025-11-30", end_date="2026-11-30")
    assert body["end_us"] - body["start_us"] == 366 * 86_400_000_000
    assert body["total"]["requests"] == 262


def test_the_range_rules_without_a_router():
    now = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)
    r = usage_range(None, None, now)
    assert (r.start.isoformat(), r.end.isoformat()) == ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    r = usage_range(None, "2026-02-28", now)
    assert (r.start.isoformat(), r.end.isoformat()) == ("2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")
    r = usage_range("2026-02-10T12:00:00+05:30", "2026-02-11T00:00:00z", now)
    assert (r.start.isoformat(), r.end.isoformat()) == ("2026-02-10T06:30:00+00:00", "2026-02-11T00:00:00+00:00")
    with pytest.raises(ApiError) as e:
        usage_range("2026-12-15", "2026-12-15T00:00:00Z", now)
    assert e.value.param == "end_date"


async def test_reports_spend_the_keys_request_budget(tmp_path):
    settings = router_settings(tmp_path, key_rate_limit_rps=0.01, key_rate_limit_burst=1)
    async with running_router(settings) as router:
        _, secret = await router.client_with_key()
        assert (await router.http.get("/v1/usage", headers=bearer(secret))).status_code == 200
        r = await router.http.get("/v1/usage", headers=bearer(secret))
        assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
