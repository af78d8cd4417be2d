"""Host payouts against the local Stripe-shaped server: a threshold crossed while requests settle
and payout runs overlap pays once; a host sets only its own threshold and Stripe account; a manual
payout waits for the operator's mark-paid; a Stripe outage retries the same transfer."""

from __future__ import annotations

import asyncio

from tests.integration.billing.payouts_helpers import (
    ACCOUNT,
    CENT,
    USD,
    earn,
    enrolled_host,
    payable,
    payout_postings,
)
from tests.router_harness import Router
from tests.stripe_server import StripeServer

TRANSFERS = "/v1/transfers"


async def test_a_threshold_crossed_under_concurrent_settlements_pays_exactly_once(router: Router,
                                                                                  stripe_srv: StripeServer):
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "2.00", "stripe_account": ACCOUNT},
                              headers=token)
    assert r.status_code == 200, r.text
    assert (r.json()["method"], r.json()["threshold_usd"]) == ("stripe", "$2.00")
    await earn(router, client_id, host_id, 30 * CENT)
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    assert r.status_code == 200 and r.json()["claimed"] == [], r.text  # $0.30 owed: below the threshold

    # Nine more settlements of $0.30 (to $3.00) while six payout runs overlap them.
    async def run() -> None:
        assert (await router.http.post("/admin/payouts/run", headers=router.admin)).status_code == 200

    await asyncio.gather(*(earn(router, client_id, host_id, 30 * CENT) for _ in range(9)),
                         *(run() for _ in range(6)))
    await run()

    [payout] = (await router.http.get("/admin/payouts", params={"host_id": host_id}, headers=router.admin)).json()
    assert payout["state"] == "paid" and payout["paid_by"] == "stripe"
    assert 2 * USD <= payout["amount_nano"] <= 3 * USD and payout["amount_nano"] % CENT == 0
    [transfer] = stripe_srv.transfers.values()
    assert (transfer["id"], transfer["transfer_group"]) == (payout["stripe_transfer_id"], payout["id"])
    assert (transfer["amount"], transfer["destination"]) == (payout["amount_nano"] // CENT, ACCOUNT)
    assert {c[3] for c in stripe_srv.posts(TRANSFERS)} == {payout["id"]}  # its idempotency key
    [posting] = await payout_postings(router, host_id)
    assert (posting["amount"], posting["key"], posting["ref"]) == (payout["amount_nano"], f"payout:{payout['id']}",
                                                                   payout["id"])
    assert payable(router, host_id) == 3 * USD - payout["amount_nano"] >= 0
    view = (await router.http.get(f"/hosts/{host_id}/payout", headers=token)).json()
    assert view["last_paid_nano"] == payout["amount_nano"] and view["owed_nano"] == payable(router, host_id)
    assert view["pending_nano"] is None and "when the amount owed reaches $2.00" in view["next"]


async def test_a_host_sees_and_changes_only_its_own_payout_settings(router: Router):
    host_id, token = await enrolled_host(router, "gpu-1")
    other_id, _ = await enrolled_host(router, "gpu-2")
    r = await router.http.get(f"/hosts/{host_id}/payout", headers=token)
    assert r.status_code == 200, r.text
    assert (r.json()["method"], r.json()["threshold_usd"], r.json()["threshold_is_default"]) == ("none", "$10.00", True)
    assert "no destination" in r.json()["next"]
    for method in ("GET", "PUT"):
        r = await router.http.request(method, f"/hosts/{other_id}/payout", json={"threshold_usd": "5.00"},
                                      headers=token)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        r = await router.http.request(method, f"/hosts/{host_id}/payout", json={"threshold_usd": "5.00"},
                                      headers=router.admin)  # the admin token is no host token
        assert r.status_code == 401, r.text
    for body, param in (({"threshold_usd": "0.50"}, "threshold_usd"), ({"threshold_usd": "5.001"}, "threshold_usd"),
                        ({"threshold_usd": "lots"}, "threshold_usd"), ({"stripe_account": "cus_123"}, "stripe_account"),
                        ({"method": "manual"}, "method"), ({"threshold_usd": 5}, "threshold_usd")):
        r = await router.http.put(f"/hosts/{host_id}/payout", json=body, headers=token)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "25.00", "stripe_account": ACCOUNT},
                              headers=token)
    assert r.status_code == 200, r.text
    admin = (await router.http.get(f"/admin/hosts/{host_id}/payout", headers=router.admin)).json()
    assert (admin["method"], admin["stripe_account"], admin["threshold_nano"]) == ("stripe", ACCOUNT, 25 * USD)
    untouched = (await router.http.get(f"/admin/hosts/{other_id}/payout", headers=router.admin)).json()
    assert (untouched["method"], untouched["threshold_is_default"]) == ("none", True)
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "default"}, headers=token)
    assert (r.json()["threshold_usd"], r.json()["stripe_account"]) == ("$10.00", ACCOUNT)


async def test_a_manual_payout_waits_for_the_operator_to_mark_it_paid(router: Router, stripe_srv: StripeServer):
    host_id, _ = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    r = await router.http.put(f"/admin/hosts/{host_id}/payout", json={"method": "manual", "threshold_usd": "1.00"},
                              headers=router.admin)
    assert r.status_code == 200 and r.json()["method"] == "manual", r.text
    await earn(router, client_id, host_id, 1_234_567_891)  # $1.234567891: the fraction of a cent stays owed
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    [due] = r.json()["awaiting_operator"]
    assert (due["state"], due["method"], due["amount_nano"]) == ("pending", "manual", 123 * CENT)
    assert stripe_srv.transfers == {} and await payout_postings(router, host_id) == []
    shown = (await router.http.get(f"/admin/hosts/{host_id}/payout", headers=router.admin)).json()
    assert shown["pending"]["id"] == due["id"] and "the operator pays it" in shown["next"]
    url = f"/admin/payouts/{due['id']}/mark-paid"
    for body, param in (({"reference": "  "}, "reference"), ({}, "reference"), ({"reference": 7}, "reference")):
        r = await router.http.post(url, json=body, headers=router.admin)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = await router.http.post(url, json={"reference": "SEPA 2026-12-01 #77"}, headers=router.admin)
    assert r.status_code == 200, r.text
    paid = r.json()
    assert (paid["state"], paid["paid_by"], paid["reference"]) == ("paid", "operator", "SEPA 2026-12-01 #77")
    again = await router.http.post(url, json={"reference": "SEPA 2026-12-01 #77"}, headers=router.admin)
    assert again.status_code == 200 and again.json() == r.json()
    other = await router.http.post(url, json={"reference": "cheque 12"}, headers=router.admin)
    assert other.status_code == 409, other.text
    [posting] = await payout_postings(router, host_id)
    assert posting["amount"] == 123 * CENT and payable(router, host_id) == 4_567_891
    missing = await router.http.post("/admin/payouts/po_nope/mark-paid", json={"reference": "x"}, headers=router.admin)
    assert missing.status_code == 404, missing.text


async def test_stripe_unavailable_retries_the_same_transfer_and_never_pays_twice(router: Router,
                                                                                 stripe_srv: StripeServer):
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    stripe_srv.transfers_unavailable = 2
    await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "1.00", "stripe_account": ACCOUNT},
                          headers=token)
    await earn(router, client_id, host_id, 5 * USD)
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    [waiting] = r.json()["retrying"]
    assert waiting["state"] == "pending" and waiting["attempts"] == 1 and "Stripe" in waiting["failure"]
    shown = (await router.http.get(f"/admin/hosts/{host_id}/payout", headers=router.admin)).json()
    assert shown["failures"] == 1 and shown["next_attempt_us"] > router.services.clock.now_us()
    # Within the backoff a run leaves it alone: Stripe is not asked again.
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    assert r.json()["retrying"][0]["id"] == waiting["id"] and len(stripe_srv.posts(TRANSFERS)) == 1
    force = {"host_id": host_id, "ignore_threshold": "true"}  # the operator: try now
    r = await router.http.post("/admin/payouts/run", params=force, headers=router.admin)
    assert r.json()["retrying"][0]["attempts"] == 2, r.text
    r = await router.http.post("/admin/payouts/run", params=force, headers=router.admin)
    [paid] = r.json()["paid"]
    assert paid["id"] == waiting["id"] and paid["amount_nano"] == 5 * USD
    assert [c[3] for c in stripe_srv.posts(TRANSFERS)] == [waiting["id"]] * 3  # one idempotency key throughout
    assert len(stripe_srv.transfers) == 1 and len(await payout_postings(router, host_id)) == 1
    assert payable(router, host_id) == 0
    shown = (await router.http.get(f"/admin/hosts/{host_id}/payout", headers=router.admin)).json()
    assert (shown["failures"], shown["next_attempt_us"]) == (0, 0)


async def test_a_transfer_stripe_refuses_fails_the_payout_and_the_next_is_a_new_one(router: Router,
                                                                                    stripe_srv: StripeServer):
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    stripe_srv.unknown_accounts.add(ACCOUNT)
    await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "1.00", "stripe_account": ACCOUNT},
                          headers=token)
    await earn(router, client_id, host_id, 2 * USD)
    r = await router.http.post("/admin/payouts/run", params={"host_id": host_id, "ignore_threshold": "true"},
                               headers=router.admin)
    [failed] = r.json()["failed"]
    assert failed["state"] == "failed" and "No such destination" in failed["failure"]
    assert payable(router, host_id) == 2 * USD and await payout_postings(router, host_id) == []
    stripe_srv.unknown_accounts.clear()
    r = await router.http.post("/admin/payouts/run", params={"host_id": host_id, "ignore_threshold": "true"},
                               headers=router.admin)
    [paid] = r.json()["paid"]
    assert paid["id"] != failed["id"] and payable(router, host_id) == 0
    states = {p["id"]: p["state"] for p in (await router.http.get("/admin/payouts", headers=router.admin)).json()}
    assert states == {failed["id"]: "failed", paid["id"]: "paid"}
