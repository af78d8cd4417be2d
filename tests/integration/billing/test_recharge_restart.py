"""A router that stops while Stripe is charging a recharge: the next run finds the charge in Stripe's
list of the customer's PaymentIntents and asks for no second one (it asks again with the same
idempotency key only if Stripe made none), so the card is charged once, the recharge never runs
twice at once, and the webhook credits it once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from tests.integration.billing.conftest import bearer, paid_checkout
from tests.router_harness import router_settings, running_router
from tests.stripe_server import wait_for

USD = 10**9
INTENTS = "/v1/payment_intents"


async def test_a_recharge_in_flight_at_a_stop_is_finished_by_the_next_run(tmp_path, db_url, stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    async with running_router(settings) as first:
        stripe_srv.webhook_url = first.url + "/v1/billing/webhook"
        client_id, secret = await first.client_with_key("acme", credit_usd="0")
        await paid_checkout(first, stripe_srv, secret, "20.00")
        stripe_srv.intents_gate = asyncio.Event()  # Stripe takes its time answering
        r = await first.http.put("/v1/me/billing", json={"auto_recharge": True, "threshold_usd": "25.00",
                                                         "amount_usd": "10.00"}, headers=bearer(secret))
        assert r.status_code == 200, r.text
        await wait_for(lambda: len(stripe_srv.posts(INTENTS)) == 1, "the recharge to reach Stripe")
    # The router stopped mid-call. Stripe finishes what it was asked.
    stripe_srv.intents_gate.set()
    await wait_for(lambda: any(pi["metadata"].get("kind") == "recharge" for pi in stripe_srv.intents.values()),
                   "Stripe to finish the charge")

    async with running_router(settings) as second:
        stripe_srv.webhook_url = second.url + "/v1/billing/webhook"
        await wait_for(lambda: second.services.billing.recharge.working == 0, "the resumed recharge")
        [(_, _, _, first_key)] = stripe_srv.posts(INTENTS)  # found at Stripe: not asked again
        assert first_key == f"recharge:{client_id}:0"
        assert [c for c in stripe_srv.calls if c[:2] == ("GET", INTENTS)]
        recharges = [pi for pi in stripe_srv.intents.values() if pi["metadata"].get("kind") == "recharge"]
        assert len(recharges) == 1  # charged once
        async with second.services.engine.connect() as conn:
            p, cb = Payment.__table__, ClientBilling.__table__
            [pay] = (await conn.execute(select(p).where(p.c.kind == "recharge"))).mappings().all()
            assert (pay["status"], pay["payment_intent_id"]) == ("open", recharges[0]["id"])
            in_flight = (await conn.execute(select(cb.c.recharge_in_flight))).scalar()
            assert in_flight == pay["id"]
        await stripe_srv.deliver()
        account = second.services.ledger.account(chart.client_account(client_id))
        assert account.balance == 30 * USD
        async with second.services.engine.connect() as conn:
            assert (await conn.execute(select(cb.c.recharge_in_flight))).scalar() is None
