"""Property tests: under any mix of concurrent deposits, holds, settlements, voids, payouts,
replays and expiries, the ledger's invariants hold and no money appears or vanishes."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.ledger import chart
from backend.ledger.errors import HoldResolved, IdempotencyConflict, InsufficientFunds
from backend.ledger.queries import account_sums, check_invariants
from backend.ledger.service import Ledger, Usage

CLIENTS = 3
HOSTS = 2

deposit = st.tuples(st.just("deposit"), st.integers(0, CLIENTS - 1), st.integers(1, 5_000),
                    st.integers(0, 6))  # small key pool: replays and conflicts happen
request = st.tuples(
    st.just("request"), st.integers(0, CLIENTS - 1), st.integers(1, 2_000),   # client, hold amount
    st.floats(0, 1), st.floats(0, 1),                                        # charge / host share
    st.sampled_from(["settle", "settle", "fail", "void", "post", "open"]), st.integers(0, 3),
    st.integers(0, HOSTS - 1),
)
payout = st.tuples(st.just("payout"), st.integers(0, HOSTS - 1), st.integers(1, 1_500))
actions = st.lists(st.tuples(st.integers(0, 20), st.one_of(deposit, request, payout)), min_size=1, max_size=60)
opening = st.lists(st.integers(0, 20_000), min_size=CLIENTS, max_size=CLIENTS)

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Book:
    """What the test expects, from the outcomes the ledger reported."""

    def __init__(self) -> None:
        self.deposits: dict[str, tuple[int, int]] = {}  # key -> (client, amount) applied
        self.credited = defaultdict(int)
        self.charged = defaultdict(int)
        self.host_earned = defaultdict(int)
        self.paid_out = defaultdict(int)


async def _act(ledger: Ledger, p: str, delayed: tuple, book: Book, n: int) -> None:
    delay, action = delayed
    for _ in range(delay):  # spread the starts so that operations interleave differently
        await asyncio.sleep(0)
    client = lambda i: chart.client_account(f"{p}c{i}")  # noqa: E731
    host = lambda i: chart.host_account(f"{p}h{i}")  # noqa: E731
    kind = action[0]
    if kind == "deposit":
        _, c, amount, k = action
        key = f"{p}dep{k}"
        try:
            r = await ledger.transfer(key, chart.PAYMENT_CLEARING, client(c), amount, code="deposit")
        except IdempotencyConflict:
            assert key in book.deposits and book.deposits[key] != (c, amount)
            return
        if r.replayed:
            assert book.deposits[key] == (c, amount)
        else:
            assert key not in book.deposits
            book.deposits[key] = (c, amount)
            book.credited[c] += amount
    elif kind == "payout":
        _, h, amount = action
        try:
            await ledger.transfer(f"{p}pay{n}", host(h), chart.PAYMENT_CLEARING, amount, code="payout")
        except InsufficientFunds:
            return
        book.paid_out[h] += amount
    else:
        _, c, amount, charge_f, share_f, outcome, yields, h = action
        try:
            hold, _durable = ledger.reserve(client(c), chart.REVENUE, amount, code="usage", ttl_us=10**12)
        except InsufficientFunds:
            return
        for _ in range(yields):
            await asyncio.sleep(0)
        charged = int(amount * charge_f)
        share = int(charged * share_f)
        usage = Usage(request_id=f"{p}r{n}", client_id=f"{p}c{c}", model="m", prompt_tokens=1,
                      completion_tokens=1, price_prompt_per_mtok=1, price_completion_per_mtok=1,
                      started_us=1, finished_us=2, host_id=f"{p}h{h}")
        if outcome == "settle":
            await ledger.settle(hold.key, charged=charged, host_share=share, host_account=host(h), usage=usage)
            book.charged[c] += charged
            book.host_earned[h] += share
        elif outcome == "fail":
            await ledger.settle(hold.key, charged=0, usage=Usage(
                request_id=usage.request_id, client_id=usage.client_id, model="m", prompt_tokens=1,
                completion_tokens=0, price_prompt_per_mtok=1, price_completion_per_mtok=1, started_us=1,
                finished_us=2, status="failed"))
        elif outcome == "void":
            await ledger.void(hold.key)
        elif outcome == "post":
            if charged:
                await ledger.post(hold.key, charged)
                book.charged[c] += charged
            else:
                await ledger.void(hold.key)
            try:
                await ledger.post(hold.key)
                raise AssertionError("a hold was posted twice")
            except HoldResolved:
                pass
        # "open": left for the expiry sweep


@PROPERTY_SETTINGS
@given(opening=opening, actions=actions)
async def test_invariants_hold_under_concurrent_operations(engine, opening, actions):
    p = f"t{secrets.token_hex(3)}-"
    book = Book()
    ledger = Ledger(engine, expiry_interval_s=0)
    await ledger.start()
    try:
        for i in range(CLIENTS):
            await ledger.open_account(chart.client_account(f"{p}c{i}"), chart.Kind.CLIENT_PREPAID)
        for i in range(HOSTS):
            await ledger.open_account(chart.host_account(f"{p}h{i}"), chart.Kind.HOST_PAYABLE)
        for i, amount in enumerate(opening):
            if amount:
                await ledger.transfer(f"{p}open{i}", chart.PAYMENT_CLEARING, chart.client_account(f"{p}c{i}"),
                                      amount, code="deposit")
                book.credited[i] += amount
        # Hosts start with some earnings so that payouts can succeed or be refused.
        for i in range(HOSTS):
            await ledger.transfer(f"{p}seed{i}", chart.GPU_COST, chart.host_account(f"{p}h{i}"), 1_000, code="seed")
            book.host_earned[i] += 1_000
        await asyncio.gather(*(_act(ledger, p, a, book, n) for n, a in enumerate(actions)))

        for i in range(CLIENTS):
            acc = ledger.account(chart.client_account(f"{p}c{i}"))
            assert acc.balance == book.credited[i] - book.charged[i]
            assert acc.available >= 0
        for i in range(HOSTS):
            assert ledger.account(chart.host_account(f"{p}h{i}")).balance == book.host_earned[i] - book.paid_out[i]

        # Every hold left open is released by the sweep; nothing stays reserved.
        await asyncio.gather(*ledger.expire_due(now=2**62))
        for i in range(CLIENTS):
            acc = ledger.account(chart.client_account(f"{p}c{i}"))
            assert acc.available == acc.balance
        await ledger.flush()
        memory = {a.code: (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
                  for a in ledger.accounts()}
    finally:
        await ledger.close()

    async with engine.connect() as conn:
        assert await check_invariants(conn) == []
        assert await account_sums(conn) == memory

    # A restart rebuilds exactly the same state from the database.
    async with Ledger(engine, expiry_interval_s=0) as again:
        assert {a.code: (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
                for a in again.accounts()} == memory
        assert again.open_holds() == []
