"""The ledger against a real database: money moves exactly, once, or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.ledger import chart
from backend.ledger.errors import (
    AccountExists,
    HoldExceeded,
    HoldNotFound,
    HoldResolved,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    LedgerUnavailable,
    UnknownAccount,
)
from backend.ledger.queries import account_sums, check_invariants
from backend.ledger.service import Ledger, Usage
from backend.money import NANO_PER_USD
from backend.runtime.clock import VirtualClock

USD = NANO_PER_USD
CLIENT = chart.client_account("acme")
HOST = chart.host_account("rig-1")


def usage(request_id: str, **kw) -> Usage:
    base = dict(request_id=request_id, client_id="acme", model="llama-3.1-8b-instruct", prompt_tokens=100,
                completion_tokens=50, price_prompt_per_mtok=50_000_000, price_completion_per_mtok=80_000_000,
                started_us=1, finished_us=2, host_id="rig-1", key_id="k1")
    base.update(kw)
    return Usage(**base)


async def funded(ledger: Ledger, usd: int = 10) -> None:
    await ledger.open_account(CLIENT, chart.Kind.CLIENT_PREPAID, owner="acme")
    await ledger.open_account(HOST, chart.Kind.HOST_PAYABLE, owner="rig-1")
    await ledger.transfer("stripe:evt_1", chart.PAYMENT_CLEARING, CLIENT, usd * USD, code="deposit")


async def assert_sound(ledger: Ledger) -> None:
    await ledger.flush()
    async with ledger.engine.connect() as conn:
        assert await check_invariants(conn) == []
        stored = await account_sums(conn)
    for acc in ledger.accounts():
        assert stored[acc.code] == (acc.debits_posted, acc.credits_posted, acc.debits_pending, acc.credits_pending)


async def test_deposit_hold_settle_moves_exact_amounts(ledger):
    await funded(ledger)
    hold = await ledger.hold(CLIENT, chart.REVENUE, 2 * USD, code="usage")
    assert ledger.account(CLIENT).available == 8 * USD
    s = await ledger.settle(hold.key, charged=1_250_000_000, host_share=1 * USD, host_account=HOST,
                            usage=usage("req-1"))
    assert (s.charged, s.released, s.host_share) == (1_250_000_000, 750_000_000, USD)
    assert ledger.account(CLIENT).balance == 10 * USD - 1_250_000_000
    assert ledger.account(CLIENT).available == ledger.account(CLIENT).balance
    assert ledger.account(chart.REVENUE).balance == 1_250_000_000
    assert ledger.account(HOST).balance == USD
    assert ledger.account(chart.GPU_COST).balance == USD
    await assert_sound(ledger)
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(text("SELECT charged, host_share, status FROM usage_event"))).one()
    assert tuple(row) == (1_250_000_000, USD, "ok")


async def test_failed_request_is_not_charged_and_host_not_paid(ledger):
    await funded(ledger)
    hold = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    s = await ledger.settle(hold.key, charged=0, usage=usage("req-f", status="failed", completion_tokens=0))
    assert (s.charged, s.released) == (0, USD)
    assert ledger.account(CLIENT).balance == 10 * USD
    assert ledger.account(HOST).balance == 0
    with pytest.raises(InvalidRequest, match="not charged"):
        h2 = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
        await ledger.settle(h2.key, charged=5, usage=usage("req-g", status="failed"))
    await assert_sound(ledger)


async def test_hold_beyond_balance_is_refused_with_amounts(ledger):
    await funded(ledger, usd=1)
    with pytest.raises(InsufficientFunds, match=r"\$1\.000000 available, \$2\.000000 is needed"):
        await ledger.hold(CLIENT, chart.REVENUE, 2 * USD, code="usage")
    await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    with pytest.raises(InsufficientFunds):
        await ledger.hold(CLIENT, chart.REVENUE, 1, code="usage")
    await assert_sound(ledger)


async def test_bad_amounts_and_accounts_are_refused_and_nothing_is_written(ledger):
    await funded(ledger)
    before = ledger.stats["operations"]
    for bad in (0, -5, 1.5, "100", True, None):
        with pytest.raises(InvalidAmount):
            await ledger.transfer("x", chart.PAYMENT_CLEARING, CLIENT, bad, code="deposit")
        with pytest.raises(InvalidAmount):
            await ledger.hold(CLIENT, chart.REVENUE, bad, code="usage")
    with pytest.raises(InvalidAmount, match="float"):
        await ledger.transfer("x", chart.PAYMENT_CLEARING, CLIENT, 0.1, code="deposit")
    with pytest.raises(UnknownAccount, match="client:nobody"):
        await ledger.transfer("x", chart.PAYMENT_CLEARING, "client:nobody", 5, code="deposit")
    with pytest.raises(InvalidRequest, match="two different accounts"):
        await ledger.transfer("x", CLIENT, CLIENT, 5, code="deposit")
    with pytest.raises(InvalidRequest, match="unknown account kind"):
        await ledger.open_account("weird", "mystery")
    with pytest.raises(AccountExists):
        await ledger.open_account(CLIENT, chart.Kind.REVENUE)
    with pytest.raises(InvalidRequest, match="idempotency key"):
        await ledger.transfer("", chart.PAYMENT_CLEARING, CLIENT, 5, code="deposit")
    assert ledger.stats["operations"] == before
    await assert_sound(ledger)


async def test_replayed_key_changes_nothing_and_different_content_is_an_error(ledger):
    await funded(ledger)
    again = await ledger.transfer("stripe:evt_1", chart.PAYMENT_CLEARING, CLIENT, 10 * USD, code="deposit")
    assert again.replayed
    assert ledger.account(CLIENT).balance == 10 * USD
    with pytest.raises(IdempotencyConflict, match="stripe:evt_1"):
        await ledger.transfer("stripe:evt_1", chart.PAYMENT_CLEARING, CLIENT, 11 * USD, code="deposit")
    await assert_sound(ledger)


async def test_replay_is_detected_after_a_restart(engine):
    async with Ledger(engine, expiry_interval_s=0) as first:
        await funded(first)
    async with Ledger(engine, expiry_interval_s=0) as second:
        again = await second.transfer("stripe:evt_1", chart.PAYMENT_CLEARING, CLIENT, 10 * USD, code="deposit")
        assert again.replayed
        assert second.account(CLIENT).balance == 10 * USD
        with pytest.raises(IdempotencyConflict):
            await second.transfer("stripe:evt_1", chart.PAYMENT_CLEARING, CLIENT, 1, code="deposit")


async def test_concurrent_replays_apply_once(ledger):
    import asyncio

    await funded(ledger)
    results = await asyncio.gather(*(
        ledger.transfer("grant-7", chart.PROMOTIONS, CLIENT, USD, code="grant") for _ in range(20)
    ))
    assert sum(not r.replayed for r in results) == 1
    assert ledger.account(CLIENT).balance == 11 * USD
    await assert_sound(ledger)


async def test_a_hold_resolves_exactly_once(ledger):
    await funded(ledger)
    hold = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.post(hold.key, 400)
    with pytest.raises(HoldResolved, match="already resolved \\(posted\\)"):
        await ledger.post(hold.key)
    with pytest.raises(HoldResolved):
        await ledger.void(hold.key)
    v = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.void(v.key)
    with pytest.raises(HoldResolved, match="voided"):
        await ledger.post(v.key)
    with pytest.raises(HoldNotFound):
        await ledger.post("h-never")
    over = await ledger.hold(CLIENT, chart.REVENUE, 10, code="usage")
    with pytest.raises(HoldExceeded):
        await ledger.post(over.key, 11)
    assert ledger.account(CLIENT).balance == 10 * USD - 400
    await assert_sound(ledger)


async def test_expired_holds_are_released(ledger):
    await funded(ledger, usd=1)
    hold = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage", ttl_us=1)
    with pytest.raises(InsufficientFunds):
        await ledger.hold(CLIENT, chart.REVENUE, 1, code="usage")
    futures = ledger.expire_due()
    assert len(futures) == 1
    await futures[0]
    assert ledger.account(CLIENT).available == USD
    with pytest.raises(HoldResolved, match="expired"):
        await ledger.post(hold.key)
    await assert_sound(ledger)


async def test_open_holds_survive_a_restart(engine):
    async with Ledger(engine, expiry_interval_s=0) as first:
        await funded(first)
        hold = await first.hold(CLIENT, chart.REVENUE, 3 * USD, code="usage")
    async with Ledger(engine, expiry_interval_s=0) as second:
        assert second.account(CLIENT).available == 7 * USD
        await second.post(hold.key, USD)
        assert second.account(CLIENT).balance == 9 * USD
        await assert_sound(second)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_transfer SET amount = amount + 1",
    "DELETE FROM ledger_transfer",
    "UPDATE usage_event SET charged = 0",
    "DELETE FROM usage_event",
])
async def test_the_database_refuses_to_rewrite_history(ledger, statement):
    await funded(ledger)
    hold = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.settle(hold.key, charged=10, usage=usage("req-x"))
    with pytest.raises(Exception, match="immutable"):
        async with ledger.engine.begin() as conn:
            await conn.execute(text(statement))
    await assert_sound(ledger)


async def test_the_database_refuses_an_overdraft_even_behind_the_ledgers_back(ledger):
    await funded(ledger, usd=1)
    with pytest.raises(Exception, match="ck_account_debit_cap"):
        async with ledger.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE ledger_account SET debits_posted = credits_posted + 1 WHERE code = :c"), {"c": CLIENT})


async def test_a_failed_commit_is_rolled_back_in_memory_and_on_disk(ledger, monkeypatch):
    await funded(ledger)
    writer = ledger._writer
    real = writer._write
    calls = {"n": 0}

    def failing(*rows, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(*rows, **kw)

    monkeypatch.setattr(writer, "_write", failing)
    with pytest.raises(LedgerUnavailable, match="disk full"):
        await ledger.transfer("grant-x", chart.PROMOTIONS, CLIENT, USD, code="grant")
    assert ledger.account(CLIENT).balance == 10 * USD
    # The key was never used, so it can be used now.
    await ledger.transfer("grant-x", chart.PROMOTIONS, CLIENT, USD, code="grant")
    assert ledger.account(CLIENT).balance == 11 * USD
    await assert_sound(ledger)


async def test_many_clients_spending_one_balance_never_overdraw(ledger):
    import asyncio

    await funded(ledger, usd=1)
    ok = 0

    async def spend(i: int) -> None:
        nonlocal ok
        try:
            hold, _ = ledger.reserve(CLIENT, chart.REVENUE, 30_000_000, code="usage")
        except InsufficientFunds:
            return
        await asyncio.sleep(0)
        await ledger.settle(hold.key, charged=30_000_000, host_share=10_000_000, host_account=HOST,
                            usage=usage(f"r{i}"))
        ok += 1

    await asyncio.gather(*(spend(i) for i in range(100)))
    assert ok == 33
    assert ledger.account(CLIENT).balance == USD - 33 * 30_000_000
    await assert_sound(ledger)


async def test_a_cancelled_stream_pays_for_what_was_delivered(ledger):
    await funded(ledger)
    hold = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    s = await ledger.settle(hold.key, charged=1234, host_share=1000, host_account=HOST,
                            usage=usage("req-c", status="cancelled", completion_tokens=7))
    assert s.charged == 1234
    assert ledger.account(HOST).balance == 1000
    with pytest.raises(InvalidRequest, match="status must be"):
        h2 = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
        await ledger.settle(h2.key, charged=1, usage=usage("req-d", status="weird"))
    await assert_sound(ledger)


async def test_a_caller_keyed_hold_is_idempotent(ledger):
    await funded(ledger)
    first = await ledger.hold(CLIENT, chart.REVENUE, USD, code="lease", key="lease-1")
    again = await ledger.hold(CLIENT, chart.REVENUE, USD, code="lease", key="lease-1")
    assert again.key == first.key == "lease-1"
    assert ledger.account(CLIENT).available == 9 * USD
    with pytest.raises(IdempotencyConflict):
        await ledger.hold(CLIENT, chart.REVENUE, 2 * USD, code="lease", key="lease-1")
    with pytest.raises(IdempotencyConflict):  # a transfer's key is not a hold's
        await ledger.hold(chart.PAYMENT_CLEARING, CLIENT, 10 * USD, code="deposit", key="stripe:evt_1")
    await ledger.post("lease-1", 10)
    with pytest.raises(HoldResolved):
        await ledger.hold(CLIENT, chart.REVENUE, USD, code="lease", key="lease-1")
    await assert_sound(ledger)


async def test_a_commit_waits_for_another_writer_without_blocking_the_loop(ledger, db_url):
    import asyncio
    import sqlite3

    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    await funded(ledger)
    path = db_url.split(":///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    task = asyncio.create_task(ledger.transfer("grant-lock", chart.PROMOTIONS, CLIENT, USD, code="grant"))
    ticks = 0
    for _ in range(20):  # the event loop keeps running meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert not task.done() and ticks == 20
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 5)
    assert ledger.account(CLIENT).balance == 11 * USD
    await assert_sound(ledger)


async def test_a_lazy_hold_rides_with_the_next_commit_or_a_timer(ledger):
    import asyncio

    await funded(ledger)
    before = ledger.stats["batches"]
    _, durable = ledger.reserve(CLIENT, chart.REVENUE, USD, code="usage", lazy=True)
    await asyncio.sleep(0)
    assert not durable.done()  # not committed on its own at once
    await asyncio.wait_for(durable, 2)  # but within the lazy delay
    assert ledger.stats["batches"] == before + 1
    h2, d2 = ledger.reserve(CLIENT, chart.REVENUE, USD, code="usage", lazy=True)
    await ledger.settle(h2.key, charged=5, usage=usage("req-lazy"))  # one commit for both
    assert d2.done() and ledger.stats["batches"] == before + 2
    await assert_sound(ledger)


async def test_a_hold_is_released_when_it_falls_due_not_at_the_next_sweep(engine):
    """The expiry sweep sleeps up to its interval (an hour here) yet a hold whose time runs out sooner
    is released then: a new hold that falls due first wakes it, and each sweep sleeps until the
    earliest hold. On the virtual clock, so the hour costs nothing."""
    clock = VirtualClock(1_767_225_600_000_000)
    with clock.hold():
        led = Ledger(engine, expiry_interval_s=3600, clock=clock)
        await led.start()
        client = chart.client_account("acme")
        await led.open_account(client, chart.Kind.CLIENT_PREPAID, owner="acme")
        await led.transfer("grant", chart.PROMOTIONS, client, 1_000, code="grant")
    try:
        await clock.sleep(10)  # the first sweep ran at start, found nothing, and sleeps an hour
        with clock.hold():
            await led.hold(client, chart.REVENUE, 100, code="usage", ttl_us=30_000_000)
        await clock.sleep(29)
        assert len(led.open_holds()) == 1 and led.account(client).available == 900
        await clock.sleep(2)
        assert led.open_holds() == [] and led.account(client).available == 1_000
    finally:
        with clock.hold():
            await led.close()


async def test_a_usage_event_may_stand_for_several_requests_and_reports_count_them(ledger):
    # A simulation settles a replica's requests of an hour at one price as one usage event: its
    # `requests` column says how many, and the usage report sums it (production rows are 1 each).
    from backend.ledger.reports import usage_by

    await funded(ledger)
    one = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.settle(one.key, charged=1_000, usage=usage("req-1"))
    many = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.settle(many.key, charged=5_000, usage=usage("sim-1", requests=250))
    failed = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
    await ledger.settle(failed.key, charged=0, usage=usage("sim-2", requests=7, status="failed", prompt_tokens=0,
                                                           completion_tokens=0))
    (row,) = await usage_by(ledger.engine, "model", 0, 10**16)
    assert (row.requests, row.failed, row.charged) == (258, 7, 6_000)
    for bad in (0, -1, True, 2**31):
        h = await ledger.hold(CLIENT, chart.REVENUE, USD, code="usage")
        with pytest.raises(InvalidRequest, match="usage requests must be an integer from 1"):
            ledger.settle_nowait(h.key, charged=0, usage=usage(f"bad-{bad}", requests=bad))
        await ledger.void(h.key)
    await assert_sound(ledger)


async def test_a_receivable_is_settled_at_most_for_what_is_owed(ledger):
    """A refund the client's credit could not cover is owed (receivable); paying it off can never
    credit the receivable beyond what was debited to it."""
    await ledger.open_account("client:r", chart.Kind.CLIENT_PREPAID, owner="r")
    owed = chart.receivable_account("r")
    await ledger.open_account(owed, chart.Kind.RECEIVABLE, owner="r")
    await ledger.transfer("pay", chart.PAYMENT_CLEARING, "client:r", 10 * NANO_PER_USD, code="stripe_payment")
    await ledger.transfer("short", owed, chart.PAYMENT_CLEARING, 3 * NANO_PER_USD, code="receivable")
    with pytest.raises(InsufficientFunds):
        await ledger.transfer("settle-too-much", "client:r", owed, 3 * NANO_PER_USD + 1, code="receivable_settled")
    await ledger.transfer("settle", "client:r", owed, 3 * NANO_PER_USD, code="receivable_settled")
    assert ledger.account(owed).balance == 0 and ledger.account("client:r").balance == 7 * NANO_PER_USD
