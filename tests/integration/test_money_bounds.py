"""Every amount is bounded far below int64 nano-USD: a grant, a balance, a price. Above, the
admin API answers 400 naming the field; one bad entry never fails the other entries that share
its group commit; and the audit's sums never overflow."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from backend.ledger import chart
from backend.ledger.errors import BalanceLimit, InvalidAmount, InvalidRequest
from backend.ledger.queries import account_sums, check_invariants
from backend.ledger.service import Ledger, Usage
from backend.money import MAX_BALANCE_NANO, MAX_RUNNING_SUM_NANO, NANO_PER_USD
from tests.router_harness import router_settings, running_router

USD = NANO_PER_USD


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


async def grant(router, client_id: str, amount: str, key: str):
    return await router.http.post(f"/admin/clients/{client_id}/credit",
                                  json={"amount_usd": amount, "idempotency_key": key}, headers=router.admin)


async def audit(router) -> list[str]:
    async with router.services.engine.connect() as conn:
        return await check_invariants(conn)


async def test_grants_above_the_bound_are_400_naming_the_field_and_balances_stay_integers(router):
    client_id, _ = await router.client_with_key("whale", credit_usd="0")
    for i, amount in enumerate(["5000000000", "5000000000", "10000000000", "100000000.000000001"]):
        r = await grant(router, client_id, amount, f"big-{i}")
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "amount_usd"
        assert "largest" in r.json()["error"]["message"]
    client = (await router.http.get("/admin/clients", headers=router.admin)).json()[0]
    assert client["balance_nano"] == 0
    async with router.services.engine.connect() as conn:
        kinds = (await conn.execute(text("SELECT DISTINCT typeof(credits_posted) FROM ledger_account"))).scalars()
        assert set(kinds) == {"integer"}
    assert await audit(router) == []


async def test_a_balance_is_bounded_too(router):
    client_id, _ = await router.client_with_key("whale", credit_usd="0")
    for i in range(MAX_BALANCE_NANO // (100_000_000 * USD)):  # up to the bound, in the largest grants
        r = await grant(router, client_id, "100000000", f"g-{i}")
        assert r.status_code == 200, r.text
    assert r.json()["balance_nano"] == MAX_BALANCE_NANO
    r = await grant(router, client_id, "0.01", "one-cent-more")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "amount_usd"
    assert "largest one account may hold" in r.json()["error"]["message"]
    assert await audit(router) == []


async def test_a_bad_grant_never_fails_the_grants_committed_with_it(router):
    clients = [(await router.client_with_key(f"c{i}", credit_usd="0"))[0] for i in range(20)]
    good = [grant(router, c, "5.00", f"ok-{c}") for c in clients]
    bad = grant(router, clients[0], "10000000000", "too-much")  # $1e10: more nano-USD than int64 holds
    *answers, refused = await asyncio.gather(*good, bad)
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "amount_usd"
    assert await audit(router) == []


async def test_a_host_cost_above_the_bound_is_400(router):
    r = await router.http.post("/admin/hosts", json={"name": "gold", "cost_per_hour_usd": "20000"},
                               headers=router.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "cost_per_hour_usd"


# ---------------------------------------------------------------- the ledger itself

CLIENT = chart.client_account("acme")


def usage(request_id: str, **kw) -> Usage:
    base = dict(request_id=request_id, client_id="acme", model="m", prompt_tokens=100, completion_tokens=50,
                price_prompt_per_mtok=50_000_000, price_completion_per_mtok=80_000_000, started_us=1, finished_us=2)
    base.update(kw)
    return Usage(**base)


async def test_one_bad_entry_fails_alone_in_its_group_commit(ledger: Ledger, engine):
    await ledger.open_account(CLIENT, chart.Kind.CLIENT_PREPAID, owner="acme")
    await ledger.transfer("seed", chart.PROMOTIONS, CLIENT, 100 * USD, code="grant")
    holds = [ledger.reserve(CLIENT, chart.REVENUE, USD, code="request")[0] for _ in range(3)]

    async def settle(key: str, **kw):
        return await ledger.settle(key, charged=USD // 2, usage=usage(key, **kw))

    results = await asyncio.gather(
        ledger.transfer("a", chart.PROMOTIONS, CLIENT, 5 * USD, code="grant"),
        ledger.transfer("huge", chart.PROMOTIONS, CLIENT, 10**19, code="grant"),  # past int64
        settle(holds[0].key),
        settle(holds[1].key, prompt_tokens=10**20),  # an engine's absurd usage report
        settle(holds[2].key),
        ledger.transfer("b", chart.PROMOTIONS, CLIENT, 7 * USD, code="grant"),
        return_exceptions=True)
    assert isinstance(results[1], InvalidAmount)
    assert isinstance(results[3], InvalidRequest) and "prompt_tokens" in str(results[3])
    assert [type(r).__name__ for i, r in enumerate(results) if i not in (1, 3)] == [
        "TransferResult", "Settlement", "Settlement", "TransferResult"]
    await ledger.flush()
    async with engine.connect() as conn:
        assert await check_invariants(conn) == []
        credits = (await account_sums(conn))[CLIENT][1]
    assert credits == 112 * USD


async def test_an_account_sum_never_passes_the_bound(ledger: Ledger):
    await ledger.open_account(CLIENT, chart.Kind.CLIENT_PREPAID, owner="acme")
    for i in range(10):
        await ledger.transfer(f"g{i}", chart.PROMOTIONS, CLIENT, 100_000_000 * USD, code="grant")
    with pytest.raises(BalanceLimit, match="largest one account may hold"):
        await ledger.transfer("over", chart.PROMOTIONS, CLIENT, 1, code="grant")
    assert ledger.account(CLIENT).credits_posted == MAX_BALANCE_NANO
    # What was spent makes room again: the bound is on the balance, not on what was ever paid in.
    await ledger.transfer("spent", CLIENT, chart.REVENUE, 100_000_000 * USD, code="usage")
    await ledger.transfer("top-up", chart.PROMOTIONS, CLIENT, 100_000_000 * USD, code="grant")
    assert ledger.account(CLIENT).credits_posted == MAX_BALANCE_NANO + 100_000_000 * USD


async def test_lifetime_revenue_past_a_billion_keeps_the_business_running(ledger: Ledger):
    """A system account's running sum only grows (revenue): it is bounded by int64, not by the
    balance bound, which would stop every request once lifetime revenue reached $1 billion."""
    for i in range(11):
        await ledger.transfer(f"r{i}", chart.PROMOTIONS, chart.REVENUE, 100_000_000 * USD, code="grant")
    assert ledger.account(chart.REVENUE).credits_posted == 11 * 100_000_000 * USD > MAX_BALANCE_NANO
    # Still never past what a 64-bit column holds, with room for the largest amount.
    ledger.account(chart.REVENUE).credits_posted = MAX_RUNNING_SUM_NANO  # as if after ~$9.2 billion
    with pytest.raises(BalanceLimit, match="running sum"):
        await ledger.transfer("over", chart.PROMOTIONS, chart.REVENUE, 1, code="grant")


async def test_the_audit_sums_beyond_int64_without_overflow(ledger: Ledger, engine):
    # Ten accounts at the bound: their sums together pass int64, which SQLite's SUM refuses.
    for i in range(10):
        await ledger.open_account(chart.client_account(f"c{i}"), chart.Kind.CLIENT_PREPAID)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE ledger_account SET credits_posted = :n WHERE code LIKE 'client:%'"),
                           {"n": MAX_BALANCE_NANO})
        await conn.execute(text("UPDATE ledger_account SET debits_posted = :n WHERE code IN (:a, :b)"),
                           {"n": MAX_BALANCE_NANO * 5, "a": chart.PROMOTIONS, "b": chart.PAYMENT_CLEARING})
    async with engine.connect() as conn:
        problems = await check_invariants(conn)
    # The sums balance; only the per-account check (no postings behind these figures) complains.
    assert problems and not any("debits equal" in p for p in problems), problems
