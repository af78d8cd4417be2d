"""A router that stops in the middle of a payout: after Stripe made the transfer and before the
ledger posting, or after the posting and before the payout row says paid. The next run on the same
database reconciles by the payout id (Stripe's transfer group and idempotency key, the ledger's
key) and ends with exactly one transfer and one posting."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from backend.billing.payouts.tables import HostPayout
from tests.integration.billing.payouts_helpers import ACCOUNT, USD, earn, enrolled_host, payable, payout_postings
from tests.router_harness import router_settings, running_router
from tests.stripe_server import StripeServer, wait_for

TRANSFERS = "/v1/transfers"


async def _payout_rows(router) -> list[dict]:
    p = HostPayout.__table__
    async with router.services.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(p))).mappings()]


async def _start_paying(router, stripe_srv: StripeServer) -> str:
    """A host owed $4 that sets its Stripe account: the loop wakes and pays it. Returns the host id."""
    host_id, token = await enrolled_host(router)
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    await earn(router, client_id, host_id, 4 * USD)
    r = await router.http.put(f"/hosts/{host_id}/payout", json={"threshold_usd": "1.00", "stripe_account": ACCOUNT},
                              headers=token)
    assert r.status_code == 200, r.text
    return host_id


async def _finished_once(router, stripe_srv: StripeServer, host_id: str) -> dict:
    await wait_for(lambda: router.services.payouts is not None and payable(router, host_id) == 0, "the posting")
    rows: list[dict] = []

    async def paid() -> bool:
        rows[:] = await _payout_rows(router)
        return [r["state"] for r in rows] == ["paid"]

    for _ in range(500):
        if await paid():
            break
        await asyncio.sleep(0.01)
    [row] = rows
    assert row["state"] == "paid", row
    [transfer] = stripe_srv.transfers.values()
    assert (transfer["transfer_group"], transfer["amount"], row["stripe_transfer_id"]) == (row["id"], 400,
                                                                                           transfer["id"])
    [posting] = await payout_postings(router, host_id)
    assert (posting["key"], posting["amount"]) == (f"payout:{row['id']}", 4 * USD)
    return row


async def test_a_stop_after_stripe_transferred_and_before_the_posting(tmp_path, db_url, stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    stripe_srv.transfers_gate = asyncio.Event()  # Stripe transfers, then its answer never arrives
    async with running_router(settings) as first:
        host_id = await _start_paying(first, stripe_srv)
        await wait_for(lambda: len(stripe_srv.transfers) == 1, "Stripe to make the transfer")
        [left] = await _payout_rows(first)
        assert left["state"] == "pending" and await payout_postings(first, host_id) == []
        assert payable(first, host_id) == 4 * USD
    stripe_srv.transfers_gate.set()
    async with running_router(settings) as second:  # its loop's first run reconciles
        row = await _finished_once(second, stripe_srv, host_id)
    assert len(stripe_srv.posts(TRANSFERS)) == 1  # found by its transfer group: not asked for again
    assert any(c[0] == "GET" and c[1] == TRANSFERS and c[2].get("transfer_group") == row["id"]
               for c in stripe_srv.calls)


async def test_a_stop_after_the_posting_and_before_the_payout_is_marked_paid(tmp_path, db_url, stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    posted = asyncio.Event()

    async def stop_after_posting(step: str, payout_id: str) -> None:
        if step == "posted":
            posted.set()
            await asyncio.Event().wait()  # the process dies here

    async with running_router(settings) as first:
        first.services.payouts.step_hook = stop_after_posting
        host_id = await _start_paying(first, stripe_srv)
        await asyncio.wait_for(posted.wait(), 10)
        [left] = await _payout_rows(first)
        assert left["state"] == "pending" and len(await payout_postings(first, host_id)) == 1
    async with running_router(settings) as second:
        await _finished_once(second, stripe_srv, host_id)
    assert len(stripe_srv.posts(TRANSFERS)) == 1  # the ledger had it: Stripe was not asked again


async def test_a_stop_before_stripe_was_asked_pays_once_at_the_next_start(tmp_path, db_url, stripe_srv):
    settings = router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())
    stripe_srv.transfers_unavailable = 1  # the first attempt reaches no Stripe: the payout stays pending
    async with running_router(settings) as first:
        host_id = await _start_paying(first, stripe_srv)
        await wait_for(lambda: len(stripe_srv.posts(TRANSFERS)) == 1, "the first attempt")
        await wait_for(lambda: any(e.kind == "billing.payout_retry" for e in first.services.events.since()),
                       "the attempt to be recorded")
    async with running_router(settings) as second:
        r = await second.http.post("/admin/payouts/run", params={"host_id": host_id, "ignore_threshold": "true"},
                                   headers=second.admin)
        assert r.status_code == 200, r.text
        row = await _finished_once(second, stripe_srv, host_id)
    assert [c[3] for c in stripe_srv.posts(TRANSFERS)] == [row["id"], row["id"]]
