"""charge.refunded and charge.dispute.created take credit back: from what the client has available
(balance minus holds), the rest recorded as a receivable; a balance never goes below zero, and the
next payment first pays what is owed."""

from __future__ import annotations

from sqlalchemy import select

from backend.billing.tables import Payment
from backend.ledger import chart
from backend.ledger.queries import check_invariants
from backend.ledger.tables import LedgerTransfer
from backend.runtime.bus import BillingEvent
from tests.integration.billing.conftest import bearer, paid_checkout

USD = 10**9


async def _transfers(router, payment_id: str) -> dict[str, tuple[str, int]]:
    """The ledger's transfers of a payment: key -> (code, amount)."""
    await router.services.ledger.flush()
    t = LedgerTransfer.__table__
    async with router.services.engine.connect() as conn:
        rows = (await conn.execute(select(t.c.key, t.c.code, t.c.amount).where(t.c.ref == payment_id))).all()
    return {k: (c, a) for k, c, a in rows}


async def _payment(router, payment_id: str) -> dict:
    async with router.services.engine.connect() as conn:
        p = Payment.__table__
        return dict((await conn.execute(select(p).where(p.c.id == payment_id))).mappings().one())


async def _sound(router) -> None:
    await router.services.ledger.flush()
    async with router.services.engine.connect() as conn:
        assert await check_invariants(conn) == []


async def _paid(router, stripe_srv, amount_usd: str = "20.00"):
    client_id, secret = await router.client_with_key("acme", credit_usd="0")
    started = await paid_checkout(router, stripe_srv, secret, amount_usd)
    row = await _payment(router, started["payment_id"])
    return client_id, secret, started["payment_id"], row["charge_id"]


async def test_a_partial_refund_comes_out_of_credit(router, stripe_srv):
    client_id, _, pay, charge = await _paid(router, stripe_srv)
    refund = stripe_srv.refund(charge, 500)
    await stripe_srv.deliver()
    led = router.services.ledger
    assert led.account(chart.client_account(client_id)).balance == 15 * USD
    re_id = next(iter(stripe_srv.refunds))
    assert (await _transfers(router, pay))[f"stripe:{charge}:{re_id}"] == ("stripe_refund", 5 * USD)
    assert (await _payment(router, pay))["refunded"] == 5 * USD
    # The same refund told again (Stripe's retry with a new event id): nothing more.
    assert (await stripe_srv.send(stripe_srv.event("charge.refunded", refund["data"]["object"]))).status_code == 200
    assert led.account(chart.client_account(client_id)).balance == 15 * USD
    # A second refund of the same charge is its own.
    stripe_srv.refund(charge, 300)
    await stripe_srv.deliver()
    assert led.account(chart.client_account(client_id)).balance == 12 * USD
    assert (await _payment(router, pay))["refunded"] == 8 * USD
    await _sound(router)


async def test_a_refund_larger_than_available_credit_leaves_zero_and_a_receivable(router, stripe_srv):
    client_id, secret, pay, charge = await _paid(router, stripe_srv)
    led = router.services.ledger
    client = chart.client_account(client_id)
    # A request in flight holds $3: only $17 is available.
    hold, durable = led.reserve(client, chart.REVENUE, 3 * USD, code="usage", ref="req-in-flight")
    await durable
    stripe_srv.refund(charge)  # all $20
    await stripe_srv.deliver()
    assert led.account(client).available == 0
    assert led.account(client).balance == 3 * USD  # the hold's, released below
    owed = chart.receivable_account(client_id)
    assert led.account(owed).balance == 3 * USD
    re_id = next(iter(stripe_srv.refunds))
    moved = await _transfers(router, pay)
    assert moved[f"stripe:{charge}:{re_id}"] == ("stripe_refund", 17 * USD)
    assert moved[f"stripe:{charge}:{re_id}:receivable"] == ("receivable", 3 * USD)
    await led.void(hold.key)
    assert led.account(client).balance == 3 * USD

    # The request settled at $3: the balance is zero, and the client is stopped there (402).
    hold, durable = led.reserve(client, chart.REVENUE, 3 * USD, code="usage", ref="req-2")
    await durable
    await led.post(hold.key)
    assert led.account(client).balance == 0

    # The next payment first pays what is owed.
    second = await paid_checkout(router, stripe_srv, secret, "10.00")
    assert led.account(owed).balance == 0
    assert led.account(client).balance == 7 * USD
    assert (await _transfers(router, second["payment_id"]))[f"stripe:{second['payment_id']}:receivable_settled"] == \
        ("receivable_settled", 3 * USD)
    await _sound(router)


async def test_a_dispute_takes_credit_back_and_turns_auto_recharge_off(router, stripe_srv):
    client_id, secret, pay, charge = await _paid(router, stripe_srv)
    r = await router.http.put("/v1/me/billing", json={"auto_recharge": True, "threshold_usd": "1.00",
                                                      "amount_usd": "10.00"}, headers=bearer(secret))
    assert r.status_code == 200, r.text
    # $25 on a $20 charge: the client gives back the $20 it paid, not more (the rest is the operator's to contest).
    stripe_srv.dispute(charge, 2500, reason="fraudulent")
    await stripe_srv.deliver()
    led = router.services.ledger
    assert led.account(chart.client_account(client_id)).balance == 0
    dp = next(iter(stripe_srv.disputes))
    moved = await _transfers(router, pay)
    assert moved[f"stripe:{charge}:{dp}"] == ("stripe_dispute", 20 * USD)
    assert f"stripe:{charge}:{dp}:receivable" not in moved
    assert (await _payment(router, pay))["disputed"] == 25 * USD
    me = (await router.http.get("/v1/me/billing", headers=bearer(secret))).json()
    assert me["auto_recharge"] is False and "disputed" in me["disabled_reason"]
    assert stripe_srv.posts("/v1/payment_intents") == []  # the disputed card was not charged again
    disputed = [e for e in router.services.events.since(0) if e.kind == "billing.disputed"]
    assert len(disputed) == 1 and isinstance(disputed[0], BillingEvent) and disputed[0].subject == client_id
    assert "$5.00 not taken back from the client" in disputed[0].message
    await _sound(router)


async def test_a_charge_refunded_and_then_disputed_is_taken_back_once(router, stripe_srv):
    # Each reversal was taken whole: a full refund and then a dispute of the same $20 left the
    # client owing $20 more than it ever paid.
    client_id, _, pay, charge = await _paid(router, stripe_srv)
    stripe_srv.refund(charge)
    await stripe_srv.deliver()
    led = router.services.ledger
    assert led.account(chart.client_account(client_id)).balance == 0
    stripe_srv.dispute(charge)
    await stripe_srv.deliver()
    moved = await _transfers(router, pay)
    assert sorted(code for code, _ in moved.values()) == ["stripe_payment", "stripe_refund"], moved
    assert led.account(chart.client_account(client_id)).balance == 0
    assert chart.receivable_account(client_id) not in {a.code for a in led.accounts()}
    [said] = [e for e in router.services.events.since(0) if e.kind == "billing.disputed"]
    assert "$20.00 not taken back from the client" in said.message
    await _sound(router)
