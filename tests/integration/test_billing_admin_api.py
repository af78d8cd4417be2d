"""GET /admin/billing over real HTTP: today's Stripe payments and refunds, auto-recharges and their
failures, this month's invoices and each client's recharge settings, read from seeded billing rows
and ledger moves (yesterday's and last month's left out); the typed admin client decodes it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

from backend.billing.invoice_tables import Invoice
from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from backend.money import parse_usd
from backend.runtime.clock import set_fixed_clock, to_us
from backend.wire.admin_client import AdminClient
from tests.router_harness import router_settings, running_router

NOW = to_us(dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC))
HOUR = 3_600_000_000
YESTERDAY = NOW - 24 * HOUR
CLIENTS = ("acme", "globex", "initech", "umbrella")  # umbrella never touched billing


def usd(text: str) -> int:
    return parse_usd(text, what="amount")


@pytest.fixture
async def router(tmp_path, db_url):
    set_fixed_clock(YESTERDAY)
    try:
        async with running_router(router_settings(tmp_path, database_url=db_url)) as r:
            yield r
    finally:
        set_fixed_clock(None)


def _payment(pid: str, client: str, kind: str, amount: str, status: str, at: int, failure: str = "",
             credited: str = "0", refunded: str = "0", disputed: str = "0") -> dict:
    return dict(id=pid, client_id=client, kind=kind, amount=usd(amount), status=status, idempotency_key=f"idem-{pid}",
                payment_intent_id=f"pi_{pid}", charge_id=f"ch_{pid}", credited=usd(credited), refunded=usd(refunded),
                disputed=usd(disputed), failure=failure, created_us=at, updated_us=at)


def _invoice(seq: int, client: str, period: str, issued: int, usage: str, closing: str) -> dict:
    start = to_us(dt.datetime.fromisoformat(f"{period}-01T00:00:00+00:00"))
    return dict(seq=seq, number=f"TM-2026-{seq:06d}", client_id=client, client_name=client.title(), period=period,
                period_start_us=start, period_end_us=start + 30 * 24 * HOUR, issued_us=issued,
                opening_balance=usd("1"), closing_balance=usd(closing), usage_total=usd(usage),
                payments_total=usd("10"), grants_total=0, refunds_total=0, business_name="Tokenmill Test",
                business_address="1 Test Street")


async def _seed(router) -> None:
    s = router.services
    for c in CLIENTS:
        await s.clients.create_client(c.title(), c)
    led = s.ledger

    async def paid(pid: str, client: str, amount: str) -> None:
        await led.transfer(f"stripe:{pid}:credit", chart.PAYMENT_CLEARING, chart.client_account(client), usd(amount),
                           code="stripe_payment", ref=pid)

    # Yesterday: a payment (not today's), and last month's invoice (not this month's).
    await paid("pay_old", "acme", "7")
    rows = [_payment("pay_old", "acme", "checkout", "7", "succeeded", YESTERDAY, credited="7")]
    set_fixed_clock(NOW - 5 * HOUR)
    await paid("pay_1", "acme", "25")
    await paid("pay_2", "acme", "10")
    await s.clients.grant_credit("initech", usd("5"), idempotency_key="grant-initech")
    set_fixed_clock(NOW - 2 * HOUR)
    # A refund of $5 from acme's credit; a dispute of $8 on initech, which had only $5: $3 owed.
    await led.transfer("stripe:ch_pay_1:re_1", chart.client_account("acme"), chart.PAYMENT_CLEARING, usd("5"),
                       code="stripe_refund", ref="pay_1")
    await led.transfer("stripe:ch_pay_9:dp_1", chart.client_account("initech"), chart.PAYMENT_CLEARING, usd("5"),
                       code="stripe_dispute", ref="pay_9")
    await led.open_account(chart.receivable_account("initech"), chart.Kind.RECEIVABLE, owner="initech")
    await led.transfer("stripe:ch_pay_9:dp_1:receivable", chart.receivable_account("initech"),
                       chart.PAYMENT_CLEARING, usd("3"), code="receivable", ref="pay_9")
    set_fixed_clock(NOW)
    rows += [
        _payment("pay_1", "acme", "checkout", "25", "succeeded", NOW - 5 * HOUR, credited="25", refunded="5"),
        _payment("pay_2", "acme", "recharge", "10", "succeeded", NOW - 4 * HOUR, credited="10"),
        _payment("pay_3", "globex", "recharge", "20", "failed", NOW - 3 * HOUR, failure="Your card was declined."),
        _payment("pay_4", "initech", "recharge", "15", "requires_action", NOW - 2 * HOUR,
                 failure="This payment requires authentication."),
        _payment("pay_5", "globex", "checkout", "50", "open", NOW - HOUR),
    ]
    settings = [
        dict(client_id="acme", stripe_customer_id="cus_a", payment_method_id="pm_a", recharge_enabled=True,
             recharge_threshold=usd("5"), recharge_amount=usd("10"), recharge_monthly_cap=usd("100"),
             recharge_failures=0, updated_us=NOW),
        dict(client_id="globex", stripe_customer_id="cus_g", payment_method_id="pm_g", recharge_enabled=True,
             recharge_threshold=usd("10"), recharge_amount=usd("20"), recharge_failures=1,
             recharge_in_flight="pay_6", updated_us=NOW),
        dict(client_id="initech", stripe_customer_id="cus_i", recharge_enabled=False, recharge_threshold=usd("2"),
             recharge_amount=usd("15"), recharge_failures=3,
             recharge_disabled_reason="turned off after 3 failed recharges in a row", updated_us=NOW),
    ]
    invoices = [_invoice(1, "acme", "2026-09", NOW - 54 * 24 * HOUR, "3", "4"),
                _invoice(2, "acme", "2026-10", NOW - 23 * 24 * HOUR, "12.5", "9.25"),
                _invoice(3, "globex", "2026-10", NOW - 23 * 24 * HOUR, "0.75", "0")]
    async with s.engine.begin() as conn:
        for table, values in ((Payment, rows), (ClientBilling, settings), (Invoice, invoices)):
            for v in values:  # one by one: the rows leave different columns to their defaults
                await conn.execute(insert(table.__table__).values(**v))


async def test_admin_billing_shows_today_this_month_and_every_clients_settings(router):
    await _seed(router)
    assert (await router.http.get("/admin/billing")).status_code == 401
    r = await router.http.get("/admin/billing", headers=router.admin)
    assert r.status_code == 200, r.text
    b = r.json()
    assert (b["now_us"], b["day_start_us"], b["month"]) == (NOW, NOW - 15 * HOUR, "2026-11")
    # Payments: two credited today through Stripe ($25 + $10); yesterday's $7 is not today's.
    assert b["payments"] == {"count": 2, "sum_nano": usd("35")}
    assert [p["id"] for p in b["payment_rows"]] == ["pay_5", "pay_4", "pay_3", "pay_2", "pay_1"]
    pay_1 = b["payment_rows"][-1]
    assert (pay_1["client_name"], pay_1["kind"], pay_1["credited_nano"], pay_1["refunded_nano"]) == \
        ("Acme", "checkout", usd("25"), usd("5"))
    # Refunds and disputes: what credit covered, and what the client now owes.
    assert b["refunds"] == {"count": 2, "sum_nano": usd("13")}
    refunds = {r["kind"]: r for r in b["refund_rows"]}
    assert (refunds["refund"]["client_id"], refunds["refund"]["from_credit_nano"], refunds["refund"]["owed_nano"],
            refunds["refund"]["payment_id"]) == ("acme", usd("5"), 0, "pay_1")
    assert (refunds["dispute"]["client_name"], refunds["dispute"]["from_credit_nano"],
            refunds["dispute"]["owed_nano"]) == ("Initech", usd("5"), usd("3"))
    # Auto-recharges: three asked today, one paid, two failed with Stripe's words; one in flight now.
    rc = b["recharges"]
    assert (rc["attempts"], rc["succeeded"], rc["failed"], rc["in_flight"]) == (
        3, {"count": 1, "sum_nano": usd("10")}, {"count": 2, "sum_nano": usd("35")}, 1)
    assert [(f["id"], f["status"], f["failure"]) for f in rc["failures"]] == [
        ("pay_4", "requires_action", "This payment requires authentication."),
        ("pay_3", "failed", "Your card was declined.")]
    # Invoices issued this month (for October), not September's.
    assert [(i["number"], i["client_name"], i["period"], i["usage_nano"], i["closing_balance_nano"])
            for i in b["invoices"]] == [("TM-2026-000002", "Acme", "2026-10", usd("12.5"), usd("9.25")),
                                        ("TM-2026-000003", "Globex", "2026-10", usd("0.75"), 0)]
    assert b["invoices_total_nano"] == usd("13.25")
    # Each client: settings (none stored: null), card, balance, available, owed.
    clients = {c["client_id"]: c for c in b["clients"]}
    assert [c["name"] for c in b["clients"]] == ["Acme", "Globex", "Initech", "Umbrella"]
    acme = clients["acme"]
    assert (acme["balance_nano"], acme["available_nano"], acme["owed_nano"], acme["has_card"]) == (
        usd("37"), usd("37"), 0, True)
    assert (acme["recharge_enabled"], acme["recharge_threshold_nano"], acme["recharge_amount_nano"],
            acme["recharge_monthly_cap_nano"], acme["recharge_failures"]) == (True, usd("5"), usd("10"), usd("100"), 0)
    assert (clients["globex"]["recharge_monthly_cap_nano"], clients["globex"]["recharge_in_flight"]) == (None, "pay_6")
    initech = clients["initech"]
    assert (initech["balance_nano"], initech["owed_nano"], initech["has_card"], initech["recharge_enabled"],
            initech["recharge_failures"], initech["recharge_disabled_reason"]) == (
        0, usd("3"), False, False, 3, "turned off after 3 failed recharges in a row")
    umbrella = clients["umbrella"]
    assert umbrella["recharge_enabled"] is None and umbrella["recharge_threshold_nano"] is None
    assert umbrella["recharge_disabled_reason"] == "" and umbrella["owed_nano"] == 0

    # The console's typed client decodes the same answer.
    api = AdminClient(router.url, router.services.admin_token)
    try:
        typed = await api.billing()
        assert typed.payments.sum_nano == usd("35") and typed.clients[2].owed_nano == usd("3")
        assert typed.recharges.failures[0].failure == "This payment requires authentication."
        # A client's payments (the drill-down): any day, newest first.
        assert [p.id for p in await api.client_payments("acme")] == ["pay_2", "pay_1", "pay_old"]
        assert [p.id for p in await api.client_payments("acme", limit=1)] == ["pay_2"]
        assert await api.client_payments("umbrella") == []
    finally:
        await api.aclose()
    r = await router.http.get("/admin/billing/clients/nobody/payments", headers=router.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "client_not_found")
    r = await router.http.get("/admin/billing/clients/acme/payments", params={"limit": 0}, headers=router.admin)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "limit")


async def test_admin_billing_with_nothing_yet(router):
    set_fixed_clock(NOW)
    r = await router.http.get("/admin/billing", headers=router.admin)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["payments"] == b["refunds"] == {"count": 0, "sum_nano": 0}
    assert b["payment_rows"] == b["refund_rows"] == b["invoices"] == b["clients"] == []
    assert b["recharges"]["attempts"] == 0 and b["recharges"]["failures"] == []


async def test_admin_profit_checks_its_range(router):
    set_fixed_clock(NOW)
    assert (await router.http.get("/admin/profit")).status_code == 401
    r = await router.http.get("/admin/profit", headers=router.admin)
    assert r.status_code == 200 and r.json() == []
    for params, param in (({"since_us": NOW, "until_us": NOW}, "until_us"),
                          ({"since_us": 0, "until_us": NOW}, "until_us"),
                          ({"since_us": -1}, "since_us")):
        r = await router.http.get("/admin/profit", params=params, headers=router.admin)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param, r.text
