"""POST /v1/billing/checkout with the real stripe library against a local Stripe: the session it asks
for, the checks on the amount, credit only from the webhook, and a client that goes from no credit to
a served request through Checkout and the webhook alone (the real openai SDK)."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select

from backend.billing.tables import Payment
from backend.ledger.queries import check_invariants
from backend.ledger.tables import LedgerTransfer
from tests.integration.billing.conftest import MODEL, bearer, checkout, paid_checkout
from tests.router_harness import router_settings, running_router

USD = 10**9


async def _payment(router, payment_id: str) -> dict:
    async with router.services.engine.connect() as conn:
        return dict((await conn.execute(select(Payment.__table__).where(Payment.__table__.c.id == payment_id)))
                    .mappings().one())


async def test_checkout_asks_stripe_for_a_session_that_saves_the_card(router, stripe_srv):
    client_id, secret = await router.client_with_key("acme", credit_usd="0")
    r = await checkout(router, secret, "20.00")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["amount_nano"] == 20 * USD and out["amount_usd"] == "$20.00"
    assert out["url"].startswith("https://checkout.stripe.com/") and out["expires_at"] > 0
    pay = out["payment_id"]

    [(_, _, customer, customer_key)] = stripe_srv.posts("/v1/customers")
    assert customer["metadata"] == {"client_id": client_id} and customer_key == f"customer:{client_id}"
    [(_, _, session, session_key)] = stripe_srv.posts("/v1/checkout/sessions")
    assert session_key == f"checkout:{pay}"
    assert session["mode"] == "payment" and session["client_reference_id"] == client_id
    assert session["line_items"] == [{"quantity": "1", "price_data": {
        "currency": "usd", "unit_amount": "2000", "product_data": {"name": "tokenmill prepaid credit"}}}]
    assert session["payment_intent_data"] == {"setup_future_usage": "off_session",
                                              "metadata": {"client_id": client_id, "payment_id": pay}}
    assert session["metadata"] == {"client_id": client_id, "payment_id": pay}
    assert session["success_url"].startswith(router.services.settings.router_public_url + "/billing/done")
    assert session["cancel_url"] == router.services.settings.router_public_url + "/billing/cancelled"

    row = await _payment(router, pay)
    assert (row["kind"], row["status"], row["amount"], row["credited"]) == ("checkout", "open", 20 * USD, 0)
    assert row["checkout_session_id"] == out["url"].rsplit("/", 1)[-1]
    # No credit before Stripe says it was paid.
    assert router.services.ledger.account(f"client:{client_id}").balance == 0

    # A second top-up reuses the client's Stripe customer.
    assert (await checkout(router, secret, "5")).status_code == 201
    assert len(stripe_srv.posts("/v1/customers")) == 1
    assert len(stripe_srv.customers) == 1


async def test_a_client_goes_from_no_credit_to_a_served_request_through_checkout_alone(router, stripe_srv):
    await router.add_host("rig-a", [MODEL])
    client_id, secret = await router.client_with_key("newcomer", credit_usd="0")
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    msgs = [{"role": "user", "content": "hello"}]
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8)
        assert refused.value.status_code == 402

        started = await paid_checkout(router, stripe_srv, secret, "20.00")

        done = await sdk.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8)
        assert done.usage.completion_tokens == 8
    finally:
        await sdk.close()
    s = router.services
    await s.ledger.flush()
    async with s.engine.connect() as conn:
        t = LedgerTransfer.__table__
        key = f"stripe:{started['payment_id']}:credit"
        credit = (await conn.execute(select(t).where(t.c.key == key))).mappings().one()
        assert (credit["amount"], credit["code"], credit["ref"]) == (20 * USD, "stripe_payment", started["payment_id"])
        assert await check_invariants(conn) == []
    charged = s.pricer.quote(s.catalogue.model(MODEL)).cost(done.usage.prompt_tokens, done.usage.completion_tokens)
    assert s.ledger.account(f"client:{client_id}").balance == 20 * USD - charged
    assert s.ledger.account("payment_clearing").balance == 20 * USD
    row = await _payment(router, started["payment_id"])
    assert (row["status"], row["credited"]) == ("succeeded", 20 * USD)
    assert row["payment_intent_id"].startswith("pi_") and row["charge_id"].startswith("ch_")
    me = (await router.http.get("/v1/me/billing", headers=bearer(secret))).json()
    assert me["card_saved"] is True  # the PaymentIntent's card, for auto-recharge


@pytest.mark.parametrize(("body", "says"), [
    ({"amount_usd": "4.99"}, "from $5.00 to $10,000.00"),
    ({"amount_usd": "10000.01"}, "from $5.00 to $10,000.00"),
    ({"amount_usd": "20.001"}, "whole cents"),
    ({"amount_usd": 20.0}, "Expected `str`"),
    ({"amount_usd": "twenty"}, "amount_usd"),
    ({}, "missing required field"),
    ({"amount_usd": "20", "currency": "eur"}, "currency"),
])
async def test_the_amount_is_checked_and_named(router, stripe_srv, body, says):
    _, secret = await router.client_with_key("acme", credit_usd="0")
    r = await router.http.post("/v1/billing/checkout", json=body, headers=bearer(secret))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == ("currency" if "currency" in body else "amount_usd")
    assert says in err["message"]
    assert stripe_srv.calls == []  # nothing asked of Stripe


async def test_checkout_needs_a_client_key(router, stripe_srv):
    r = await router.http.post("/v1/billing/checkout", json={"amount_usd": "20"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = await router.http.post("/v1/billing/checkout", json={"amount_usd": "20"}, headers=bearer("tm-nope"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = await router.http.post("/v1/billing/checkout", json={"amount": 1})  # the key first, whatever the body
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert stripe_srv.calls == []


async def test_without_a_stripe_key_the_api_names_the_setting(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        _, secret = await router.client_with_key("acme", credit_usd="0")
        r = await checkout(router, secret, "20.00")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "billing_not_configured"
        assert "[billing] stripe_secret_key" in r.json()["error"]["message"]
        r = await router.http.put("/v1/me/billing", json={"auto_recharge": True, "threshold_usd": "5",
                                                          "amount_usd": "10"}, headers=bearer(secret))
        assert r.status_code == 503 and "[billing] stripe_secret_key" in r.json()["error"]["message"]
        r = await router.http.post("/v1/billing/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
        assert r.status_code == 503 and "[billing] stripe_webhook_secret" in r.json()["error"]["message"]
        async with router.services.engine.connect() as conn:
            assert (await conn.execute(select(Payment.__table__))).all() == []
