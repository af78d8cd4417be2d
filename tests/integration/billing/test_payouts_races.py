"""Host payouts where two things happen at once, or Stripe answers badly at the worst moment. Each
case paid a host twice, or left the ledger and the payout disagreeing, before the fix:
- a refusal while finding the transfer Stripe already made failed a payout Stripe had paid, and the
  next run paid the host again;
- the host setting its Stripe account canceled a manual payout the operator was paying by bank;
  Stripe then paid the same money;
- the operator's mark-paid and a destination change, or two mark-paids with different references,
  at the same moment: the ledger said paid while the payout said canceled, or both answered 200."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from backend.billing.payouts.tables import HostPayout
from backend.ledger.errors import LedgerUnavailable
from tests.integration.billing.payouts_helpers import ACCOUNT, CENT, USD, earn, enrolled_host, payable, payout_postings
from tests.router_harness import Router
from tests.stripe_server import API_KEY, StripeServer, wait_for


async def _rows(router: Router) -> list[dict]:
    p = HostPayout.__table__
    async with router.services.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(p).order_by(p.c.created_us))).mappings()]


def _sent_cents(stripe_srv: StripeServer) -> int:
    return sum(t["amount"] for t in stripe_srv.transfers.values())


async def _manual_payout_due(router: Router, usd: int = 3) -> tuple[str, dict[str, str], dict]:
    """A host paid by hand, owed `usd` dollars, its payout due: (host id, host token header, the payout)."""
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    r = await router.http.put(f"/admin/hosts/{host_id}/payout", json={"method": "manual", "threshold_usd": "1.00"},
                              headers=router.admin)
    assert r.status_code == 200, r.text
    await earn(router, client_id, host_id, usd * USD)
    [due] = (await router.http.post("/admin/payouts/run", headers=router.admin)).json()["awaiting_operator"]
    return host_id, token, due


class PausedPosting:
    """The payout service's ledger posting, held after it is written (the durable commit is an await:
    other requests run meanwhile) until `go_on` is set."""

    def __init__(self, router: Router) -> None:
        self.payouts = router.services.payouts
        self.real = self.payouts._post
        self.posted, self.go_on = asyncio.Event(), asyncio.Event()
        self.payouts._post = self._post

    async def _post(self, p) -> None:
        await self.real(p)
        self.posted.set()
        await self.go_on.wait()


async def test_a_refusal_while_finding_the_transfer_stripe_made_leaves_the_payout_pending(router: Router,
                                                                                        stripe_srv: StripeServer):
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "1.00", "stripe_account": ACCOUNT},
                              headers=token)
    assert r.status_code == 200, r.text
    ledger = router.services.payouts.ledger
    real = ledger.transfer
    fail_once = [True]

    async def flaky(*args, **kw):  # one posting that fails (database locked, disk full): nothing written
        if kw.get("code") == "host_payout" and fail_once:
            fail_once.clear()
            raise LedgerUnavailable("ledger write failed and was rolled back: database is locked")
        return await real(*args, **kw)

    ledger.transfer = flaky
    await earn(router, client_id, host_id, 4 * USD)
    force = {"host_id": host_id, "ignore_threshold": "true"}
    r = await router.http.post("/admin/payouts/run", params=force, headers=router.admin)
    assert r.status_code == 200, r.text
    await wait_for(lambda: len(stripe_srv.transfers) == 1 and not fail_once, "the transfer and the failed posting")
    [row] = await _rows(router)
    assert row["state"] == "pending" and row["stripe_transfer_id"] is not None  # Stripe paid it

    stripe_srv.api_key = "sk_test_rolled"  # the operator rolled the key: Stripe answers the router 401
    r = await router.http.post("/admin/payouts/run", params=force, headers=router.admin)
    [retrying] = r.json()["retrying"]
    assert retrying["state"] == "pending" and "Stripe" in retrying["failure"], r.text
    stripe_srv.api_key = API_KEY
    r = await router.http.post("/admin/payouts/run", params=force, headers=router.admin)
    [paid] = r.json()["paid"]
    assert paid["id"] == row["id"] and paid["stripe_transfer_id"] == row["stripe_transfer_id"]
    assert (_sent_cents(stripe_srv), len(stripe_srv.transfers)) == (400, 1)
    assert len(await payout_postings(router, host_id)) == 1 and payable(router, host_id) == 0
    assert [x["state"] for x in await _rows(router)] == ["paid"]


async def test_a_host_setting_its_stripe_account_leaves_a_manual_payout_due(router: Router, stripe_srv: StripeServer):
    host_id, token, due = await _manual_payout_due(router)
    # ... the operator is sending $3.00 by bank transfer when the host sets its Stripe account ...
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"stripe_account": ACCOUNT}, headers=token)
    assert r.status_code == 200 and r.json()["method"] == "stripe", r.text
    assert f"$3.00 due ({due['id']})" in r.json()["next"]
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    assert [p["id"] for p in r.json()["awaiting_operator"]] == [due["id"]] and r.json()["claimed"] == []
    assert stripe_srv.transfers == {}
    said = [e for e in router.services.events.since(0, 500) if e.kind == "billing.payout_due"]
    assert "stays due by other means" in said[-1].message and f"payouts cancel {due['id']}" in said[-1].message
    marked = await router.http.post(f"/admin/payouts/{due['id']}/mark-paid", json={"reference": "SEPA #2"},
                                    headers=router.admin)
    assert marked.status_code == 200 and marked.json()["state"] == "paid", marked.text
    assert payable(router, host_id) == 0 and stripe_srv.transfers == {}
    # From now on Stripe pays it.
    client_id, _ = await router.client_with_key("acme2", credit_usd="100.00")
    await earn(router, client_id, host_id, 2 * USD)
    r = await router.http.post("/admin/payouts/run", headers=router.admin)
    [paid] = r.json()["paid"]
    assert paid["method"] == "stripe" and _sent_cents(stripe_srv) == 200 and payable(router, host_id) == 0


async def test_the_operator_cancels_a_manual_payout_and_the_next_run_pays_through_stripe(router: Router,
                                                                                         stripe_srv: StripeServer):
    host_id, token, due = await _manual_payout_due(router)
    await router.http.put(f"/hosts/{host_id}/payout", json={"stripe_account": ACCOUNT}, headers=token)
    url = f"/admin/payouts/{due['id']}/cancel"
    r = await router.http.post(url, headers=router.admin)
    assert r.status_code == 200 and r.json()["state"] == "canceled", r.text
    assert (await router.http.post(url, headers=router.admin)).json() == r.json()  # told twice: as it is
    refused = await router.http.post(f"/admin/payouts/{due['id']}/mark-paid", json={"reference": "late"},
                                     headers=router.admin)
    assert refused.status_code == 409 and "canceled" in refused.json()["error"]["message"], refused.text
    # The cancel wakes the payout loop: the amount, still owed, goes to the host's Stripe account.
    await wait_for(lambda: payable(router, host_id) == 0, "the payout through Stripe")
    [paid] = (await router.http.get("/admin/payouts", params={"state": "paid"}, headers=router.admin)).json()
    assert paid["method"] == "stripe" and paid["amount_nano"] == 3 * USD and _sent_cents(stripe_srv) == 300
    # Neither a payout already paid nor an unknown one is canceled.
    r = await router.http.post(f"/admin/payouts/{paid['id']}/cancel", headers=router.admin)
    assert r.status_code == 409 and "is paid" in r.json()["error"]["message"], r.text
    assert (await router.http.post("/admin/payouts/po_nope/cancel", headers=router.admin)).status_code == 404


async def test_a_stripe_payout_under_way_is_not_canceled(router: Router, stripe_srv: StripeServer):
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    stripe_srv.transfers_unavailable = 1
    await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "1.00", "stripe_account": ACCOUNT},
                          headers=token)
    await earn(router, client_id, host_id, 2 * USD)
    [waiting] = (await router.http.post("/admin/payouts/run", headers=router.admin)).json()["retrying"]
    r = await router.http.post(f"/admin/payouts/{waiting['id']}/cancel", headers=router.admin)
    assert r.status_code == 409 and "through Stripe" in r.json()["error"]["message"], r.text


async def test_mark_paid_racing_a_destination_change_ends_paid(router: Router, stripe_srv: StripeServer):
    host_id, _, due = await _manual_payout_due(router)
    paused = PausedPosting(router)
    marking = asyncio.create_task(router.http.post(f"/admin/payouts/{due['id']}/mark-paid",
                                                   json={"reference": "SEPA #1"}, headers=router.admin))
    await asyncio.wait_for(paused.posted.wait(), 10)
    # The operator (whose change would cancel a payout nobody is paying) switches the host to Stripe meanwhile.
    r = await router.http.put(f"/admin/hosts/{host_id}/payout", json={"stripe_account": ACCOUNT},
                              headers=router.admin)
    assert r.status_code == 200, r.text
    paused.go_on.set()
    answer = await marking
    assert answer.status_code == 200 and answer.json()["state"] == "paid", answer.text
    [posting] = await payout_postings(router, host_id)
    assert posting["key"] == f"payout:{due['id']}" and payable(router, host_id) == 0
    [row] = await _rows(router)
    assert (row["state"], row["reference"]) == ("paid", "SEPA #1")
    await router.http.post("/admin/payouts/run", headers=router.admin)
    assert stripe_srv.transfers == {}


async def test_two_references_at_once_for_one_payout_one_is_refused(router: Router, stripe_srv: StripeServer):
    host_id, _, due = await _manual_payout_due(router)
    paused = PausedPosting(router)
    url = f"/admin/payouts/{due['id']}/mark-paid"
    first = asyncio.create_task(router.http.post(url, json={"reference": "SEPA #A"}, headers=router.admin))
    await asyncio.wait_for(paused.posted.wait(), 10)
    try:  # answered at once (before the fix it posted too, and waited behind the first)
        second = await asyncio.wait_for(router.http.post(url, json={"reference": "cheque #B"}, headers=router.admin),
                                        10)
    except TimeoutError:
        paused.go_on.set()
        raise
    assert second.status_code == 409, second.text
    assert "being recorded as paid (reference 'SEPA #A')" in second.json()["error"]["message"]
    cancel = await router.http.post(f"/admin/payouts/{due['id']}/cancel", headers=router.admin)
    assert cancel.status_code == 409, cancel.text  # nor canceled while it is being recorded
    shown = (await router.http.get(f"/admin/hosts/{host_id}/payout", headers=router.admin)).json()
    assert "being recorded as paid" in shown["next"]
    paused.go_on.set()
    assert (await first).status_code == 200
    [row] = await _rows(router)
    assert (row["state"], row["reference"]) == ("paid", "SEPA #A")
    assert len(await payout_postings(router, host_id)) == 1 and payable(router, host_id) == 0


async def test_a_refused_posting_gives_the_payout_back(router: Router, stripe_srv: StripeServer):
    host_id, _, due = await _manual_payout_due(router)
    ledger = router.services.payouts.ledger
    real = ledger.transfer
    fail_once = [True]

    async def flaky(*args, **kw):
        if kw.get("code") == "host_payout" and fail_once:
            fail_once.clear()
            raise LedgerUnavailable("ledger write failed and was rolled back: database is locked")
        return await real(*args, **kw)

    ledger.transfer = flaky
    url = f"/admin/payouts/{due['id']}/mark-paid"
    r = await router.http.post(url, json={"reference": "typo"}, headers=router.admin)
    assert r.status_code == 503, r.text
    [row] = await _rows(router)
    assert (row["state"], row["reference"]) == ("pending", "")  # nothing posted: any reference may record it
    r = await router.http.post(url, json={"reference": "SEPA #9"}, headers=router.admin)
    assert r.status_code == 200 and r.json()["reference"] == "SEPA #9", r.text
    assert len(await payout_postings(router, host_id)) == 1 and payable(router, host_id) == 0
    assert CENT  # amounts above are whole dollars
