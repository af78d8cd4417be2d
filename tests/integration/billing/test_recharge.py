"""Auto-recharge with the real router, the real openai SDK and the real stripe library against the
local Stripe: PUT /v1/me/billing's checks, exactly one off-session charge per threshold crossing under
100 concurrent requests, declines and authentication-required recorded and turned into events, three
failures in a row turning it off, and the monthly cap."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest
from sqlalchemy import select

from backend.billing.tables import Payment
from backend.ledger import chart
from backend.ledger.queries import check_invariants
from tests.integration.billing.conftest import MODEL, bearer, checkout, paid_checkout
from tests.stripe_server import wait_for

USD = 10**9
INTENTS = "/v1/payment_intents"


def _usd(nano: int) -> str:
    return str(Decimal(nano) / USD)


@pytest.fixture
async def served(router):
    await router.add_host("rig-a", [MODEL])
    return router


@pytest.fixture
async def client(served, stripe_srv):
    """A client whose $20 Checkout top-up saved its card, and its SDK."""
    client_id, secret = await served.client_with_key("acme", credit_usd="0")
    await paid_checkout(served, stripe_srv, secret, "20.00")
    sdk = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=secret, max_retries=0)
    sdk.tm_client_id, sdk.tm_secret = client_id, secret
    yield sdk
    await sdk.close()


async def _ask(sdk, max_tokens: int = 4):
    return await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=max_tokens)


async def _set(router, secret: str, **body) -> dict:
    r = await router.http.put("/v1/me/billing", json=body, headers=bearer(secret))
    assert r.status_code == 200, r.text
    return r.json()


async def _recharges(router, client_id: str) -> list[dict]:
    p = Payment.__table__
    async with router.services.engine.connect() as conn:
        q = select(p).where(p.c.client_id == client_id, p.c.kind == "recharge").order_by(p.c.created_us)
        return [dict(r) for r in (await conn.execute(q)).mappings()]


def _kinds(router, prefix: str = "billing.recharge") -> list[str]:
    return [e.kind for e in router.services.events.since(0) if e.kind.startswith(prefix)]


async def _settled(router) -> None:
    """Every recharge task has finished (its Stripe call answered, its outcome recorded)."""
    await wait_for(lambda: router.services.billing.recharge.working == 0, "the recharge tasks")


async def test_the_settings_are_checked_and_named(router, stripe_srv):
    _, secret = await router.client_with_key("acme", credit_usd="0")
    on = {"auto_recharge": True, "threshold_usd": "1.00", "amount_usd": "20.00"}
    r = await router.http.put("/v1/me/billing", json=on, headers=bearer(secret))
    assert r.status_code == 409, r.text
    assert "top up once through POST /v1/billing/checkout to save a card" in r.json()["error"]["message"]
    await paid_checkout(router, stripe_srv, secret, "5.00")
    bad = [
        ({**on, "amount_usd": "4.99"}, "amount_usd"),
        ({**on, "amount_usd": "20.005"}, "amount_usd"),
        ({**on, "threshold_usd": "0"}, "threshold_usd"),
        ({**on, "threshold_usd": "-1"}, "threshold_usd"),
        ({**on, "monthly_cap_usd": "10.00"}, "monthly_cap_usd"),  # below one recharge
        ({**on, "auto_recharge": "yes"}, "auto_recharge"),
        ({**on, "amount_usd": 20}, "amount_usd"),
        ({"threshold_usd": "5"}, "auto_recharge"),
        ({**on, "colour": "red"}, "colour"),
    ]
    for body, param in bad:
        r = await router.http.put("/v1/me/billing", json=body, headers=bearer(secret))
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())
    out = await _set(router, secret, **on, monthly_cap_usd="100")
    assert (out["auto_recharge"], out["threshold_usd"], out["amount_usd"], out["monthly_cap_usd"]) == \
        (True, "$1.00", "$20.00", "$100.00")
    assert out["card_saved"] is True and out["failures_in_a_row"] == 0
    # Omitted fields keep their value; null lifts the cap; off keeps the figures for next time.
    out = await _set(router, secret, auto_recharge=True, threshold_usd="2")
    assert (out["threshold_usd"], out["amount_usd"], out["monthly_cap_usd"]) == ("$2.00", "$20.00", "$100.00")
    out = await _set(router, secret, auto_recharge=True, monthly_cap_usd=None)
    assert out["monthly_cap_nano"] is None
    out = await _set(router, secret, auto_recharge=False)
    assert (out["auto_recharge"], out["threshold_usd"]) == (False, "$2.00")
    r = await router.http.put("/v1/me/billing", json=on)
    assert r.status_code == 401
    assert stripe_srv.posts(INTENTS) == []  # $5 available stayed above every threshold


async def test_one_recharge_per_crossing_under_100_concurrent_requests(served, stripe_srv, client):
    s = served.services
    account = s.ledger.account(chart.client_account(client.tm_client_id))
    # Just under what the client has: the first hold of the burst crosses it.
    threshold = account.available - 1_000
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd=_usd(threshold), amount_usd="10.00")
    assert stripe_srv.posts(INTENTS) == []  # not below yet

    done = await asyncio.gather(*[_ask(client) for _ in range(100)])
    assert all(d.usage.completion_tokens == 4 for d in done)
    await _settled(served)
    [(_, _, params, key)] = stripe_srv.posts(INTENTS)
    assert key == f"recharge:{client.tm_client_id}:0"
    assert (params["amount"], params["currency"], params["confirm"], params["off_session"]) == \
        ("1000", "usd", "true", "true")
    assert params["payment_method"] == "pm_card_visa" and params["customer"] in stripe_srv.customers
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["amount"], pay["idempotency_key"]) == ("open", 10 * USD, key)
    before = account.balance
    assert before < threshold  # still below, and still one recharge: it is in flight

    # Credit only from the webhook.
    await stripe_srv.deliver()
    assert account.balance == before + 10 * USD
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["credited"]) == ("succeeded", 10 * USD)
    # Back above the threshold: more requests, no more recharges.
    await asyncio.gather(*[_ask(client) for _ in range(20)])
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 1

    # The next crossing (the client raises its threshold above its credit) recharges again, seq 1.
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd=_usd(account.available + USD))
    await _settled(served)
    assert [k for _, _, _, k in stripe_srv.posts(INTENTS)] == [f"recharge:{client.tm_client_id}:{n}" for n in (0, 1)]
    await s.ledger.flush()
    async with s.engine.connect() as conn:
        assert await check_invariants(conn) == []


async def test_three_failures_in_a_row_turn_it_off(served, stripe_srv, client):
    stripe_srv.declines.extend(["card_declined", "authentication_required", "card_declined"])
    # $20 available, threshold $25: below at once, so turning it on tries at once.
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
    await _settled(served)
    assert _kinds(served) == ["billing.recharge_started", "billing.recharge_failed"]

    await _ask(client)  # still below: the next request tries again
    await _settled(served)
    await _ask(client)
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 3
    assert _kinds(served) == ["billing.recharge_started", "billing.recharge_failed",
                              "billing.recharge_started", "billing.recharge_requires_action",
                              "billing.recharge_started", "billing.recharge_failed", "billing.recharge_disabled"]
    pays = await _recharges(served, client.tm_client_id)
    assert [(p["status"], p["failure"]) for p in pays] == [
        ("failed", "Your card has insufficient funds."),
        ("requires_action", "Your card was declined. This transaction requires authentication."),
        ("failed", "Your card has insufficient funds."),
    ]
    assert all(p["payment_intent_id"] for p in pays)
    me = (await served.http.get("/v1/me/billing", headers=bearer(client.tm_secret))).json()
    assert (me["auto_recharge"], me["failures_in_a_row"], me["recharge_in_flight"]) == (False, 3, None)
    assert "turned off after 3 failed recharges in a row" in me["disabled_reason"]

    await _ask(client)  # off: no more attempts
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 3
    # Stripe's own failure events afterwards change nothing.
    await stripe_srv.deliver()
    assert [p["status"] for p in await _recharges(served, client.tm_client_id)] == \
        ["failed", "requires_action", "failed"]
    # Turned back on: a fresh count.
    out = await _set(served, client.tm_secret, auto_recharge=True)
    assert (out["auto_recharge"], out["failures_in_a_row"], out["disabled_reason"]) == (True, 0, "")


async def test_a_success_resets_the_count(served, stripe_srv, client):
    stripe_srv.declines.append("card_declined")
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
    await _settled(served)
    await _ask(client)  # the retry goes through
    await _settled(served)
    await stripe_srv.deliver()
    me = (await served.http.get("/v1/me/billing", headers=bearer(client.tm_secret))).json()
    assert (me["auto_recharge"], me["failures_in_a_row"], me["recharge_in_flight"]) == (True, 0, None)
    assert [p["status"] for p in await _recharges(served, client.tm_client_id)] == ["failed", "succeeded"]


async def test_the_monthly_cap_is_respected(served, stripe_srv, client):
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00",
               monthly_cap_usd="15.00")
    await _settled(served)
    await stripe_srv.deliver()  # $10 recharged: $5 of the cap left, less than one recharge
    assert served.services.ledger.account(chart.client_account(client.tm_client_id)).balance > 29 * USD
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="40.00")
    await _settled(served)
    await _ask(client)
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 1
    assert "billing.recharge_capped" in _kinds(served)
    assert [p["status"] for p in await _recharges(served, client.tm_client_id)] == ["succeeded"]


async def test_stripe_out_of_reach_is_asked_again_with_the_same_key(served, stripe_srv, client):
    served.services.billing.recharge.retry_s = (0.01, 0.01)  # seconds between tries (minutes in production)
    stripe_srv.unavailable = 2
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
    await _settled(served)
    keys = [k for _, _, _, k in stripe_srv.posts(INTENTS)]
    assert keys == [f"recharge:{client.tm_client_id}:0"] * 3  # one recharge, asked three times
    await stripe_srv.deliver()
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["credited"]) == ("succeeded", 10 * USD)
    me = (await served.http.get("/v1/me/billing", headers=bearer(client.tm_secret))).json()
    assert (me["failures_in_a_row"], me["recharge_in_flight"]) == (0, None)

    # Out of reach for longer than the tries: one failure, nothing charged, the next request tries again.
    stripe_srv.unavailable = 3
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="40.00")
    await _settled(served)
    pays = await _recharges(served, client.tm_client_id)
    assert [p["status"] for p in pays] == ["succeeded", "failed"]
    assert "Stripe is having trouble" in pays[1]["failure"]


async def test_a_late_event_about_an_old_payment_does_not_reset_the_count(served, stripe_srv):
    # The top-up is credited by checkout.session.completed; Stripe's other event about it
    # (payment_intent.succeeded) comes late, after two declines. It was answered "already credited"
    # and still zeroed the count and recharged at once: five declines in a row, not three.
    client_id, secret = await served.client_with_key("acme", credit_usd="0")
    r = await checkout(served, secret, "20.00")
    assert r.status_code == 201, r.text
    completed, succeeded, _ = stripe_srv.pay_session(r.json()["url"].rsplit("/", 1)[-1])
    stripe_srv.pending.clear()
    assert (await stripe_srv.send(completed)).status_code == 200
    sdk = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=secret, max_retries=0)
    try:
        stripe_srv.declines.extend(["card_declined"] * 6)
        await _set(served, secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
        await _settled(served)  # decline 1
        await _ask(sdk)
        await _settled(served)  # decline 2
        r = await stripe_srv.send(succeeded)
        assert r.json()["outcome"].startswith("already credited"), r.text
        await _settled(served)
        me = (await served.http.get("/v1/me/billing", headers=bearer(secret))).json()
        assert me["failures_in_a_row"] == 2 and len(stripe_srv.posts(INTENTS)) == 2
        for _ in range(3):
            await _ask(sdk)
            await _settled(served)
    finally:
        await sdk.close()
    me = (await served.http.get("/v1/me/billing", headers=bearer(secret))).json()
    assert (me["auto_recharge"], me["failures_in_a_row"]) == (False, 3)
    assert [p["status"] for p in await _recharges(served, client_id)] == ["failed"] * 3
