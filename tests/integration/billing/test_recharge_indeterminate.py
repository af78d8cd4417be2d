"""Auto-recharge when Stripe's answer is lost (a 500 whose result is indeterminate, replayed for the
same idempotency key) or a run stops mid-charge: the outcome is unknown, so the recharge stays in
flight and in the monthly cap while Stripe's list of the customer's PaymentIntents is asked what it
did. A charge Stripe made is never followed by a second one; one it did not make fails once."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import select

from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from tests.integration.billing.conftest import MODEL, bearer, paid_checkout
from tests.router_harness import router_settings, running_router
from tests.stripe_server import wait_for

USD = 10**9
INTENTS = "/v1/payment_intents"


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


async def _me(router, secret: str) -> dict:
    return (await router.http.get("/v1/me/billing", headers=bearer(secret))).json()


async def _recharges(router, client_id: str) -> list[dict]:
    p = Payment.__table__
    async with router.services.engine.connect() as conn:
        q = select(p).where(p.c.client_id == client_id, p.c.kind == "recharge").order_by(p.c.created_us)
        return [dict(r) for r in (await conn.execute(q)).mappings()]


def _kinds(router) -> list[str]:
    return [e.kind for e in router.services.events.since(0) if e.kind.startswith("billing.recharge")]


def _made(stripe_srv) -> list[dict]:
    """The recharge PaymentIntents Stripe made (each one a charge to the card, or a decline)."""
    return [pi for pi in stripe_srv.intents.values() if pi["metadata"].get("kind") == "recharge"]


async def _settled(router) -> None:
    await wait_for(lambda: router.services.billing.recharge.working == 0, "the recharge tasks")


def _balance(router, client_id: str) -> int:
    return router.services.ledger.account(chart.client_account(client_id)).balance


async def test_stripe_charged_but_answered_500_charges_once_within_the_cap(served, stripe_srv, client):
    served.services.billing.recharge.retry_s = (0.01,)
    stripe_srv.intents_lost_answers = 1  # Stripe charges the card, answers 500, replays the 500
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00",
               monthly_cap_usd="10.00")
    await _settled(served)
    key = f"recharge:{client.tm_client_id}:0"
    assert [k for *_, k in stripe_srv.posts(INTENTS)] == [key, key]  # asked, then the replayed 500
    [pi] = _made(stripe_srv)
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["payment_intent_id"], pay["failure"]) == ("open", pi["id"], "")
    assert stripe_srv.gets(INTENTS)  # found by asking Stripe's list what it did
    me = await _me(served, client.tm_secret)
    assert (me["recharge_in_flight"], me["failures_in_a_row"]) == (pay["id"], 0)

    # Still below the threshold: more requests start no second recharge while it is in flight.
    await _ask(client)
    await _ask(client)
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 2 and len(_made(stripe_srv)) == 1

    before = _balance(served, client.tm_client_id)
    await stripe_srv.deliver()  # Stripe's webhook credits the one charge, once
    await stripe_srv.deliver()
    assert _balance(served, client.tm_client_id) == before + 10 * USD
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["credited"]) == ("succeeded", 10 * USD)

    # The $10 cap is spent: the next crossing is skipped, not charged.
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="40.00")
    await _settled(served)
    assert len(stripe_srv.posts(INTENTS)) == 2 and len(_made(stripe_srv)) == 1
    kinds = _kinds(served)
    assert kinds[:3] == ["billing.recharge_started", "billing.recharge_unknown", "billing.recharge_found"]
    assert "billing.recharge_failed" not in kinds and "billing.recharge_capped" in kinds
    unknown = [e.message for e in served.services.events.since(0) if e.kind == "billing.recharge_unknown"]
    assert "outcome unknown" in unknown[0] and "asking Stripe what it did" in unknown[0]


async def test_stripe_answered_500_and_made_no_charge_fails_once(served, stripe_srv, client):
    served.services.billing.recharge.retry_s = (0.01,)
    stripe_srv.intents_errors = 1  # a 500 (replayed for the key), nothing made
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
    await _settled(served)
    key = f"recharge:{client.tm_client_id}:0"
    assert [k for *_, k in stripe_srv.posts(INTENTS)] == [key, key]
    assert len(stripe_srv.gets(INTENTS)) == 1 and _made(stripe_srv) == []
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["payment_intent_id"]) == ("failed", None)
    assert pay["failure"].startswith("Stripe made no charge")
    me = await _me(served, client.tm_secret)
    assert (me["auto_recharge"], me["recharge_in_flight"], me["failures_in_a_row"]) == (True, None, 1)
    assert _kinds(served) == ["billing.recharge_started", "billing.recharge_unknown", "billing.recharge_failed"]

    # Still below the threshold: the next request recharges again, with the next key.
    await _ask(client)
    await _settled(served)
    assert [k for *_, k in stripe_srv.posts(INTENTS)][-1] == f"recharge:{client.tm_client_id}:1"
    await stripe_srv.deliver()
    assert [p["status"] for p in await _recharges(served, client.tm_client_id)] == ["failed", "succeeded"]
    me = await _me(served, client.tm_secret)
    assert (me["recharge_in_flight"], me["failures_in_a_row"]) == (None, 0)


async def test_a_lookup_that_fails_keeps_the_recharge_in_flight_until_stripe_answers(served, stripe_srv, client):
    recharge = served.services.billing.recharge
    recharge.retry_s = (0.01, 0.02)
    stripe_srv.intents_lost_answers = 1
    stripe_srv.intents_list_unavailable = 10**6  # the list does not answer either, for a while
    await _set(served, client.tm_secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
    await wait_for(lambda: len(stripe_srv.gets(INTENTS)) >= 5 or recharge.working == 0,
                   "the lookup to be tried again and again")
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["payment_intent_id"]) == ("open", None)
    assert recharge.working == 1 and len(stripe_srv.gets(INTENTS)) >= 5
    assert (await _me(served, client.tm_secret))["recharge_in_flight"] == pay["id"]
    await _ask(client)  # below the threshold meanwhile: no second recharge
    await _ask(client)
    assert len(stripe_srv.posts(INTENTS)) == 3 and len(_made(stripe_srv)) == 1  # one recharge, three tries
    assert len(await _recharges(served, client.tm_client_id)) == 1

    stripe_srv.intents_list_unavailable = 0  # Stripe answers again
    await _settled(served)
    [pi] = _made(stripe_srv)
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["payment_intent_id"]) == ("open", pi["id"])
    # Said once that the lookup could not get an answer, not at every try.
    assert _kinds(served) == ["billing.recharge_started", "billing.recharge_unknown", "billing.recharge_unknown",
                              "billing.recharge_found"]
    before = _balance(served, client.tm_client_id)
    await stripe_srv.deliver()
    assert _balance(served, client.tm_client_id) == before + 10 * USD
    [pay] = await _recharges(served, client.tm_client_id)
    assert (pay["status"], pay["credited"]) == ("succeeded", 10 * USD)
    assert len(stripe_srv.posts(INTENTS)) == 3


async def test_a_restart_a_day_later_finds_the_charge_and_creates_no_second(tmp_path, db_url, stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    async with running_router(settings) as first:
        stripe_srv.webhook_url = first.url + "/v1/billing/webhook"
        client_id, secret = await first.client_with_key("acme", credit_usd="0")
        await paid_checkout(first, stripe_srv, secret, "20.00")
        stripe_srv.intents_gate = asyncio.Event()  # Stripe takes its time answering
        await _set(first, secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
        await wait_for(lambda: len(stripe_srv.posts(INTENTS)) == 1, "the recharge to reach Stripe")
    # The router stopped mid-call; Stripe makes the charge. The next run starts more than a day
    # later: Stripe no longer knows the idempotency key, so asking to create again would charge twice.
    stripe_srv.intents_gate.set()
    await wait_for(lambda: len(_made(stripe_srv)) == 1, "Stripe to make the charge")
    stripe_srv.forget_idempotency_keys()

    async with running_router(settings) as second:
        stripe_srv.webhook_url = second.url + "/v1/billing/webhook"
        await _settled(second)
        assert len(stripe_srv.posts(INTENTS)) == 1  # no second create
        assert stripe_srv.gets(INTENTS)
        [pi] = _made(stripe_srv)
        [pay] = await _recharges(second, client_id)
        assert (pay["status"], pay["payment_intent_id"]) == ("open", pi["id"])
        assert (await _me(second, secret))["recharge_in_flight"] == pay["id"]
        await stripe_srv.deliver()
        assert _balance(second, client_id) == 30 * USD
        async with second.services.engine.connect() as conn:
            assert (await conn.execute(select(ClientBilling.__table__.c.recharge_in_flight))).scalar() is None
        assert "billing.recharge_found" in _kinds(second)


async def test_a_restart_with_a_recharge_stripe_never_made_asks_again_with_the_same_key(tmp_path, db_url,
                                                                                         stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    async with running_router(settings) as first:
        stripe_srv.webhook_url = first.url + "/v1/billing/webhook"
        client_id, secret = await first.client_with_key("acme", credit_usd="0")
        await paid_checkout(first, stripe_srv, secret, "20.00")
        first.services.billing.recharge.retry_s = (600.0,)  # still waiting to ask again at the stop
        stripe_srv.unavailable = 1  # a 503: nothing made
        await _set(first, secret, auto_recharge=True, threshold_usd="25.00", amount_usd="10.00")
        await wait_for(lambda: len(stripe_srv.posts(INTENTS)) == 1, "the recharge to reach Stripe")
    assert _made(stripe_srv) == []

    async with running_router(settings) as second:
        stripe_srv.webhook_url = second.url + "/v1/billing/webhook"
        await _settled(second)
        key = f"recharge:{client_id}:0"
        assert [k for *_, k in stripe_srv.posts(INTENTS)] == [key, key]  # looked for, not found, asked again
        assert stripe_srv.gets(INTENTS)
        [pi] = _made(stripe_srv)
        [pay] = await _recharges(second, client_id)
        assert (pay["status"], pay["payment_intent_id"]) == ("open", pi["id"])
        await stripe_srv.deliver()
        assert _balance(second, client_id) == 30 * USD
        assert "billing.recharge_resumed" in _kinds(second)
