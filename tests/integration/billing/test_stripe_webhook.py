"""POST /v1/billing/webhook: events signed by the local Stripe with Stripe's algorithm. A wrong
signature or an old timestamp does nothing; a replay, the same event twice at once, and two events
about one payment credit it once; events out of order end in the right state."""

from __future__ import annotations

import asyncio
import json
import time

from sqlalchemy import select

from backend.billing.tables import Payment, StripeEvent
from backend.ledger.queries import check_invariants
from tests.integration.billing.conftest import checkout

USD = 10**9


async def _started(router, stripe_srv, amount_usd: str = "20.00") -> tuple[str, str, dict, list[dict]]:
    """A client whose top-up was paid on Stripe's page, the events not delivered yet."""
    client_id, secret = await router.client_with_key("acme", credit_usd="0")
    r = await checkout(router, secret, amount_usd)
    assert r.status_code == 201, r.text
    started = r.json()
    events = stripe_srv.pay_session(started["url"].rsplit("/", 1)[-1])
    stripe_srv.pending.clear()  # each test sends them itself
    return client_id, secret, started, events


def _balance(router, client_id: str) -> int:
    return router.services.ledger.account(f"client:{client_id}").balance


async def _payment(router, payment_id: str) -> dict:
    async with router.services.engine.connect() as conn:
        p = Payment.__table__
        return dict((await conn.execute(select(p).where(p.c.id == payment_id))).mappings().one())


async def _events(router) -> list[dict]:
    async with router.services.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(StripeEvent.__table__))).mappings()]


async def _sound(router) -> None:
    await router.services.ledger.flush()
    async with router.services.engine.connect() as conn:
        assert await check_invariants(conn) == []


async def test_a_wrong_signature_does_nothing(router, stripe_srv):
    client_id, _, _, (completed, _, _) = await _started(router, stripe_srv)
    payload = json.dumps(completed).encode()
    now = int(time.time())
    forged = [
        stripe_srv.sign(payload, secret="whsec_someone_else"),  # another secret
        stripe_srv.sign(payload.replace(b'"paid"', b'"PAID"')),  # signed other bytes
        f"t={now}",  # no v1
        "garbage",
    ]
    for signature in forged:
        r = await stripe_srv.send(completed, signature=signature)
        assert r.status_code == 400, (signature, r.text)
        assert r.json()["error"]["code"] == "invalid_signature"
        assert "nothing was done" in r.json()["error"]["message"]
    r = await router.http.post("/v1/billing/webhook", content=payload)  # no Stripe-Signature at all
    assert r.status_code == 400 and "Stripe-Signature" in r.json()["error"]["message"]
    assert _balance(router, client_id) == 0
    assert await _events(router) == []


async def test_an_old_timestamp_is_refused_and_a_fresh_one_taken(router, stripe_srv):
    client_id, _, _, (completed, _, _) = await _started(router, stripe_srv)
    tolerance = router.services.settings.billing.webhook_tolerance_s
    r = await stripe_srv.send(completed, timestamp=int(time.time()) - tolerance - 5)
    assert r.status_code == 400
    assert "webhook_tolerance_s" in r.json()["error"]["message"]
    assert _balance(router, client_id) == 0 and await _events(router) == []
    r = await stripe_srv.send(completed, timestamp=int(time.time()) - tolerance // 2)  # within the window
    assert r.status_code == 200, r.text
    assert r.json()["outcome"].startswith("credited $20.00")
    assert _balance(router, client_id) == 20 * USD


async def test_a_replay_answers_200_without_acting(router, stripe_srv):
    client_id, _, _, (completed, succeeded, _) = await _started(router, stripe_srv)
    first = await stripe_srv.send(completed)
    again = await stripe_srv.send(completed)  # Stripe retries when it missed our answer
    assert first.status_code == again.status_code == 200
    assert first.json()["replay"] is False and again.json()["replay"] is True
    assert again.json()["outcome"] == first.json()["outcome"]
    # The other event about the same payment credits nothing more.
    other = await stripe_srv.send(succeeded)
    assert other.status_code == 200 and other.json()["outcome"].startswith("already credited")
    assert _balance(router, client_id) == 20 * USD
    assert len(await _events(router)) == 2
    await _sound(router)


async def test_the_same_event_twice_at_once_credits_once(router, stripe_srv):
    client_id, _, started, (completed, succeeded, charged) = await _started(router, stripe_srv)
    answers = await asyncio.gather(*[stripe_srv.send(e) for e in (completed, completed, succeeded, succeeded,
                                                                  charged, completed)])
    assert [a.status_code for a in answers] == [200] * 6
    assert _balance(router, client_id) == 20 * USD
    row = await _payment(router, started["payment_id"])
    assert (row["status"], row["credited"]) == ("succeeded", 20 * USD)
    assert sorted(e["id"] for e in await _events(router)) == sorted({completed["id"], succeeded["id"], charged["id"]})
    await _sound(router)


async def test_the_payment_intent_first_then_the_session(router, stripe_srv):
    client_id, _, started, (completed, succeeded, _) = await _started(router, stripe_srv)
    r = await stripe_srv.send(succeeded)
    assert r.json()["outcome"].startswith("credited $20.00")
    assert (await stripe_srv.send(completed)).json()["outcome"].startswith("already credited")
    assert _balance(router, client_id) == 20 * USD
    row = await _payment(router, started["payment_id"])
    assert row["payment_intent_id"] == succeeded["data"]["object"]["id"]


async def test_a_failure_after_the_success_changes_nothing(router, stripe_srv):
    client_id, _, started, (completed, succeeded, _) = await _started(router, stripe_srv)
    await stripe_srv.send(completed)
    late = json.loads(json.dumps(succeeded))
    late["id"] = "evt_late_failure"
    late["type"] = "payment_intent.payment_failed"
    late["data"]["object"].update(status="requires_payment_method", last_payment_error={
        "type": "card_error", "code": "card_declined", "message": "Your card was declined."})
    r = await stripe_srv.send(late)
    assert r.status_code == 200 and r.json()["outcome"].startswith("stale")
    row = await _payment(router, started["payment_id"])
    assert (row["status"], row["credited"], row["failure"]) == ("succeeded", 20 * USD, "")
    assert _balance(router, client_id) == 20 * USD


async def test_a_refund_before_the_success_was_seen_credits_then_takes_back(router, stripe_srv):
    client_id, _, started, (completed, succeeded, charged) = await _started(router, stripe_srv)
    charge_id = charged["data"]["object"]["id"]
    refunded = stripe_srv.refund(charge_id, 500)  # $5 of $20, the success events still on their way
    r = await stripe_srv.send(refunded)
    assert r.status_code == 200, r.text
    assert _balance(router, client_id) == 15 * USD  # credited from the PaymentIntent Stripe gave, less $5
    # Stripe was asked for what the event lacked: the PaymentIntent, and the charge's refunds.
    asked = [path for method, path, _, _ in stripe_srv.calls if method == "GET"]
    assert f"/v1/payment_intents/{succeeded['data']['object']['id']}" in asked and "/v1/refunds" in asked
    for late in (completed, succeeded, refunded):
        assert (await stripe_srv.send(late)).status_code == 200
    assert _balance(router, client_id) == 15 * USD
    row = await _payment(router, started["payment_id"])
    assert (row["status"], row["credited"], row["refunded"], row["charge_id"]) == \
        ("succeeded", 20 * USD, 5 * USD, charge_id)
    await _sound(router)


async def test_events_not_ours_or_not_acted_on_are_acknowledged(router, stripe_srv):
    foreign = stripe_srv.event("payment_intent.succeeded", {"id": "pi_elsewhere", "object": "payment_intent",
                                                            "amount": 100, "amount_received": 100, "metadata": {}})
    r = await stripe_srv.send(foreign)
    assert r.status_code == 200 and r.json()["outcome"] == "ignored: not a tokenmill payment"
    r = await stripe_srv.send(stripe_srv.event("customer.created", {"id": "cus_x", "object": "customer"}))
    assert r.status_code == 200 and r.json()["outcome"].startswith("ignored")
    r = await stripe_srv.send({"hello": "world"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_event"
    assert router.services.ledger.account("payment_clearing").balance == 0


async def test_an_expired_session_is_canceled(router, stripe_srv):
    _, secret = await router.client_with_key("acme", credit_usd="0")
    started = (await checkout(router, secret, "7.50")).json()
    session = stripe_srv.sessions[started["url"].rsplit("/", 1)[-1]]
    session.update(status="expired")
    r = await stripe_srv.send(stripe_srv.event("checkout.session.expired", stripe_srv.public(session)))
    assert r.status_code == 200, r.text
    row = await _payment(router, started["payment_id"])
    assert (row["status"], row["credited"]) == ("canceled", 0)


async def test_an_old_signature_with_a_fresh_timestamp_beside_it_is_refused(router, stripe_srv):
    # Stripe's library verifies with the first item named exactly "t"; the age was read with spaces
    # stripped, so " t=<now>" ahead of the old "t=" made an hour-old captured delivery pass as fresh.
    client_id, _, _, (completed, _, _) = await _started(router, stripe_srv)
    payload = json.dumps(completed).encode()
    old = int(time.time()) - router.services.settings.billing.webhook_tolerance_s - 3600
    sig = stripe_srv.sign(payload, timestamp=old).split("v1=")[1]
    r = await stripe_srv.send(completed, signature=f"v1={sig}, t={int(time.time())},t={old}")
    assert r.status_code == 400 and "s ago" in r.json()["error"]["message"], r.text
    assert _balance(router, client_id) == 0


async def test_an_amount_in_another_currency_is_never_credited_as_cents(router, stripe_srv):
    # A session shown in yen (Stripe's Adaptive Pricing) carries yen in amount_total: 1500 JPY for
    # a $10 top-up was credited as $15.00.
    client_id, _, started, (completed, succeeded, _) = await _started(router, stripe_srv, "10.00")
    s = completed["data"]["object"]
    s["currency"], s["amount_total"], s["amount_subtotal"] = "jpy", 1500, 1500
    pi = succeeded["data"]["object"]
    pi["currency"], pi["amount_received"], pi["amount"] = "jpy", 1500, 1500
    r = await stripe_srv.send(succeeded)  # the session's event carries the USD amount, if Stripe converted
    assert r.status_code == 200 and r.json()["outcome"].startswith("waiting: Stripe reports 1500 in JPY"), r.text
    r = await stripe_srv.send(completed)
    assert r.status_code == 200 and r.json()["outcome"].startswith("not credited: Stripe reports 1500 in JPY"), r.text
    assert _balance(router, client_id) == 0
    [said] = [e for e in router.services.events.since(0) if e.kind == "billing.payment_not_credited"]
    assert said.level == "error" and "grant the credit by hand" in said.message
    # With the USD amount Stripe converted from beside it, the USD amount is credited.
    completed["id"] += "-converted"
    s["currency_conversion"] = {"source_currency": "usd", "amount_total": 1000, "amount_subtotal": 1000,
                                "fx_rate": "150"}
    r = await stripe_srv.send(completed)
    assert r.status_code == 200 and r.json()["outcome"].startswith("credited $10.00"), r.text
    assert _balance(router, client_id) == 10 * USD
    assert (await _payment(router, started["payment_id"]))["credited"] == 10 * USD
    await _sound(router)
