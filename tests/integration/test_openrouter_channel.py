"""Traffic through OpenRouter, through the real router on loopback: a client the operator marked as
the OpenRouter channel owes OpenRouter its fee on every charge, in the settlement's own transaction;
the host's share is the same as a direct client's; the profit the console shows is revenue - host
shares - GPU cost - fees from the ledger. And each model's uptime as OpenRouter counts it: a stream
broken mid-way is a failure, a 429 is not counted."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from backend.ledger import chart
from backend.ledger.errors import InvalidAmount, InvalidRequest
from backend.ledger.queries import check_invariants
from backend.ledger.service import Usage
from backend.ledger.settlement_policy import channel_fee, host_share
from backend.ledger.tables import LedgerTransfer, UsageEvent
from backend.metrics.ledger_profit import profit_by_model_and_day
from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
DAY_US = 86_400_000_000
SHARE_BPS = 7000  # a community host's payout share


async def _chat(router, secret: str, *, stream: bool = False, max_tokens: int = 8) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": max_tokens,
            "stream": stream}
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        r = await http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
        await r.aread()
        return r


async def test_openrouter_traffic_owes_its_fee_in_the_ledger_and_profit_agrees(tmp_path):
    settings = router_settings(tmp_path, openrouter={"fee_pct": 6.25})
    async with running_router(settings) as router:
        await router.add_host("garage", [MODEL], payout_share_bps=SHARE_BPS)
        direct_id, direct = await router.client_with_key("acme")
        or_id, via_or = await router.client_with_key("openrouter")
        r = await router.http.post(f"/admin/clients/{or_id}/channel", json={"channel": "open-router"},
                                   headers=router.admin)
        assert r.status_code == 400 and "channel" in r.text, r.text
        r = await router.http.post(f"/admin/clients/{or_id}/channel", json={"channel": "openrouter"},
                                   headers=router.admin)
        assert r.status_code == 200 and r.json()["channel"] == "openrouter", r.text
        listed = (await router.http.get("/admin/clients", headers=router.admin)).json()
        assert {c["id"]: c["channel"] for c in listed} == {direct_id: "direct", or_id: "openrouter"}

        for i in range(6):
            for secret in (direct, via_or):
                r = await _chat(router, secret, stream=bool(i % 2), max_tokens=8 + i)
                assert r.status_code == 200, r.text
        s = router.services
        await s.ledger.flush()
        now = s.clock.now_us()
        day = now - now % DAY_US
        metrics = (await router.http.get("/admin/metrics", headers=router.admin)).json()
        profit = (await router.http.get("/admin/profit", headers=router.admin)).json()
        rows = await profit_by_model_and_day(s.engine, day, day + DAY_US)
        u, t = UsageEvent.__table__, LedgerTransfer.__table__
        async with s.engine.connect() as conn:
            events = (await conn.execute(select(u.c.client_id, u.c.hold_key, u.c.charged, u.c.host_share, u.c.fee)
                                         .where(u.c.status == "ok"))).all()
            fees = {r.key: r for r in (await conn.execute(select(t).where(t.c.code == "channel_fee"))).all()}
            assert await check_invariants(conn) == []
        accounts = {a.id: a for a in s.ledger.accounts()}

    assert len(events) == 12
    for client_id, hold_key, charged, share, fee in events:
        assert charged > 0 and share == host_share(charged, SHARE_BPS)  # the host's share is on the charge
        if client_id == or_id:
            assert fee == channel_fee(charged, 62_500) > 0  # 6.25 % of the charge, to the nearest nano-USD
            posting = fees[f"{hold_key}/fee"]
            assert posting.amount == fee
            assert accounts[posting.debit_account_id].code == chart.FEES
            assert accounts[posting.credit_account_id].code == chart.channel_account("openrouter")
        else:
            assert fee == 0 and f"{hold_key}/fee" not in fees
    owed = sum(e.fee for e in events)
    assert len(fees) == 6 and sum(p.amount for p in fees.values()) == owed
    assert s.ledger.account(chart.channel_account("openrouter")).balance == owed
    # The console's profit is the ledger's: revenue - host shares - GPU cost - fees.
    ledger = {"revenue": sum(r.revenue for r in rows), "host_shares": sum(r.host_shares for r in rows),
              "gpu_cost": sum(r.gpu_cost for r in rows), "fees": sum(r.fees for r in rows)}
    today = metrics["today"]
    assert ledger["fees"] == owed == today["fees_nano"]
    assert (ledger["revenue"] - ledger["host_shares"] - ledger["gpu_cost"] - ledger["fees"]
            == sum(r.profit for r in rows) == today["profit_nano"])
    assert (today["revenue_nano"], today["payouts_nano"], today["gpu_cost_nano"]) == (
        ledger["revenue"], ledger["host_shares"], ledger["gpu_cost"])
    assert [(p["model"], p["fees_nano"], p["profit_nano"]) for p in profit] == [
        (r.model, r.fees, r.profit) for r in rows]
    # The last hour's live figures say the same.
    assert metrics["hour"]["fees_nano"] == owed and metrics["hour"]["profit_nano"] == today["profit_nano"]


async def test_uptime_counts_a_stream_broken_mid_way_and_not_a_429(tmp_path):
    settings = router_settings(tmp_path, openrouter={"uptime_min_requests": 4})
    async with running_router(settings) as router:
        host = await router.add_host("h1", [MODEL])
        _, secret = await router.client_with_key()

        async def uptime() -> dict:
            r = await router.http.get("/admin/models", headers=router.admin)
            return next(m for m in r.json() if m["id"] == MODEL)["uptime"]

        for stream in (False, True, False):
            assert (await _chat(router, secret, stream=stream)).status_code == 200
        assert await uptime() == {"requests": 3, "failures": 0, "window_s": 1800, "min_requests": 4, "ratio": None}

        # The replica that breaks a stream is ejected for longer than this test runs: the next
        # request finds no capacity (429), which OpenRouter does not count.
        router.services.fleet._eject_base = 600.0
        host.engine.fail("cut_after", after=3)
        cut = await _chat(router, secret, stream=True, max_tokens=64)
        assert cut.status_code == 200 and b"upstream_disconnected" in cut.content
        refused = await _chat(router, secret)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "no_capacity"
        assert await uptime() == {"requests": 4, "failures": 1, "window_s": 1800, "min_requests": 4, "ratio": 0.75}



async def test_the_ledger_refuses_a_fee_it_cannot_owe_and_posts_one_it_can(ledger):
    owed = chart.channel_account("openrouter")
    await ledger.open_account("client:or", chart.Kind.CLIENT_PREPAID, owner="or")
    await ledger.open_account(owed, chart.Kind.CHANNEL_PAYABLE, owner="openrouter")
    await ledger.transfer("seed", chart.PAYMENT_CLEARING, "client:or", 10_000, code="deposit")

    def usage(rid: str) -> Usage:
        return Usage(request_id=rid, client_id="or", model=MODEL, prompt_tokens=1, completion_tokens=1,
                     price_prompt_per_mtok=1, price_completion_per_mtok=1, started_us=1, finished_us=2)

    for why, kw in (("exceeds the amount charged", dict(charged=100, fee=101, fee_account=owed)),
                    ("needs the channel's payable", dict(charged=100, fee=5)),
                    ("must not be negative", dict(charged=100, fee=-1, fee_account=owed))):
        hold = await ledger.hold("client:or", chart.REVENUE, 1000, code="usage")
        with pytest.raises((InvalidRequest, InvalidAmount), match=why):
            await ledger.settle(hold.key, usage=usage(f"r-{why}"), **kw)
        await ledger.void(hold.key)  # refused before anything moved: the hold is still open
    hold = await ledger.hold("client:or", chart.REVENUE, 1000, code="usage")
    await ledger.settle(hold.key, charged=800, fee=44, fee_account=owed, usage=usage("r-ok"))
    await ledger.flush()
    assert ledger.account(owed).balance == 44 and ledger.account(chart.FEES).balance == 44
    assert ledger.account(chart.REVENUE).balance == 800  # the fee is a cost, not less revenue
    async with ledger.engine.connect() as conn:
        assert await check_invariants(conn) == []
