"""The Billing view driven by keys against a small fake of the admin client (the real client and
backend are in the snapshots): it refreshes only while on screen, `/` narrows all three tables,
Enter on a client or on one of its payments shows its payments and Esc comes back, N/A where a
client set nothing, and a backend that does not answer leaves N/A and DISCONNECTED."""

from __future__ import annotations

import asyncio
import time

from backend.wire.billing_admin import (
    BillingOut,
    ClientBillingOut,
    CountSum,
    InvoiceRowOut,
    PaymentRowOut,
    RechargesOut,
    RefundRowOut,
)
from console.app import TokenmillApp
from console.client import BackendUnavailable
from console.views.billing import BillingView
from console.widgets.billing_summary import BillingSummary
from console.widgets.header import StatusHeader

NANO = 10**9
NOW = 1_795_618_800_000_000  # 2026-11-25 15:00 UTC
SIZE = (120, 40)


def _pay(pid: str, client: str, name: str, kind: str, status: str, usd: int, minutes_ago: int,
         failure: str = "") -> PaymentRowOut:
    at = NOW - minutes_ago * 60_000_000
    return PaymentRowOut(pid, client, name, kind, status, usd * NANO, usd * NANO if status == "succeeded" else 0,
                         0, 0, failure, at, at)


FAILED = _pay("pay_3", "globex", "Globex", "recharge", "failed", 20, 50, "Your card was declined.")
BILLING = BillingOut(
    now_us=NOW, day_start_us=NOW - 15 * 3_600_000_000, month="2026-11",
    payments=CountSum(1, 25 * NANO),
    payment_rows=[FAILED, _pay("pay_1", "acme", "Acme Corp", "checkout", "succeeded", 25, 300)],
    refunds=CountSum(1, 8 * NANO),
    refund_rows=[RefundRowOut("stripe:ch_9:dp_1", "initech", "Initech", "dispute", "pay_9", 5 * NANO, 3 * NANO,
                              NOW - 10 * 60_000_000)],
    recharges=RechargesOut(1, CountSum(0, 0), CountSum(1, 20 * NANO), 0, [FAILED]),
    invoices=[InvoiceRowOut("TM-2026-000041", "acme", "Acme Corp", "2026-10", NOW - 23 * 86_400_000_000,
                            31 * NANO, 0, 0, 0, 50 * NANO, 19 * NANO)],
    invoices_total_nano=31 * NANO,
    clients=[ClientBillingOut("acme", "Acme Corp", 44 * NANO, 43 * NANO, 0, True, True, 5 * NANO, 10 * NANO, None, 0,
                              None, ""),
             ClientBillingOut("globex", "Globex", 2 * NANO, 2 * NANO, 0, True, True, 10 * NANO, 20 * NANO,
                              100 * NANO, 1, None, ""),
             ClientBillingOut("initech", "Initech", 0, 0, 3 * NANO, False, False, 2 * NANO, 15 * NANO, None, 3, None,
                              "turned off: 3 failed recharges in a row"),
             ClientBillingOut("umbrella", "Umbrella", 7 * NANO, 7 * NANO, 0, False, None, None, None, None, None,
                              None, "")])


class FakeApi:
    """The admin client's calls the Billing and Clients views make."""

    base_url = "http://fake"

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.billing_calls = 0
        self.payments_asked: list[str] = []

    async def billing(self) -> BillingOut:
        self.billing_calls += 1
        if self.down:
            raise BackendUnavailable(self.base_url, "ConnectError")
        return BILLING

    async def client_payments(self, client_id: str, limit: int = 100) -> list[PaymentRowOut]:
        self.payments_asked.append(client_id)
        return [p for p in BILLING.payment_rows if p.client_id == client_id]

    async def clients(self):
        return []

    async def usage(self, *args, **kwargs):
        return []

    async def keys(self, client_id):
        return []

    async def aclose(self) -> None:
        pass


def make_app(api: FakeApi, view: str = "billing") -> TokenmillApp:
    return TokenmillApp(api, refresh_s=0.05, clock_us=lambda: NOW, initial_view=view)


async def wait_for(pilot, predicate, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.02)


def cells(app, table_id: str) -> list[tuple[str, ...]]:
    table = app.view.query_one(table_id)
    return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def test_the_tables_and_na_where_a_client_set_nothing():
    async with make_app(FakeApi()).run_test(size=SIZE) as pilot:
        app = pilot.app
        await wait_for(pilot, lambda: app.view_refreshes >= 1)
        assert isinstance(app.view, BillingView)
        clients = {row[0]: row for row in cells(app, "#table")}
        assert clients["Umbrella"][4:9] == ("N/A", "N/A", "N/A", "N/A", "N/A")  # auto, below, adds, cap, fails
        assert clients["Acme Corp"][4:8] == ("on", "$5.0000", "$10.0000", "none")  # on, no monthly cap
        assert clients["Initech"][3] == "$3.0000" and clients["Initech"][10].startswith("turned off: 3 fail")
        activity = cells(app, "#activity")
        # Newest first: the dispute (10 min ago, $3 of it owed), the failed recharge, the top-up.
        assert [(r[1], r[2], r[3]) for r in activity] == [("Initech", "dispute", "taken back"),
                                                          ("Globex", "recharge", "failed"),
                                                          ("Acme Corp", "top-up", "succeeded")]
        assert "owes $3.0000" in activity[0][5] and activity[1][5] == "Your card was declined."
        assert cells(app, "#invoices") == [("TM-2026-000041", "Acme Corp", "2026-10", "$31.0000", "$19.0000")]
        summary = str(app.view.query_one(BillingSummary).render())
        assert "1 payment $25.0000" in summary and "1 failed $20.0000" in summary
        assert "November 2026" in summary and "1 invoice issued" in summary


async def test_filter_narrows_every_table_and_enter_shows_a_clients_payments():
    api = FakeApi()
    async with make_app(api).run_test(size=SIZE) as pilot:
        app = pilot.app
        await wait_for(pilot, lambda: app.view_refreshes >= 1)
        await pilot.press("slash", *"globex", "enter")
        await wait_for(pilot, lambda: len(cells(app, "#table")) == 1)
        assert [r[1] for r in cells(app, "#activity")] == ["Globex"] and cells(app, "#invoices") == []
        assert "/globex" in str(app.query_one(StatusHeader).render())
        await pilot.press("enter")  # the one client left
        await wait_for(pilot, lambda: api.payments_asked and app.view.detail_key == "globex")
        await wait_for(pilot, lambda: "Globex (globex)" in str(app.view.query_one("#detail-title").render()))
        title = str(app.view.query_one("#detail-title").render())
        assert "auto-recharge on: below $10.0000 add $20.0000, at most $100.0000 a month; 1 failed" in title
        await pilot.press("escape")
        assert app.view.detail_key is None
        await pilot.press("escape")  # and the filter goes
        await wait_for(pilot, lambda: len(cells(app, "#table")) == 4)
        # Enter on a payment of the activity table shows that payment's client.
        activity = app.view.query_one("#activity")
        activity.focus()
        await pilot.press("up", "up", "down", "enter")  # the second row: the failed recharge of Globex
        await wait_for(pilot, lambda: app.view.detail_key == "globex")


async def test_the_view_refreshes_only_while_on_screen():
    api = FakeApi()
    async with make_app(api).run_test(size=SIZE) as pilot:
        app = pilot.app
        await wait_for(pilot, lambda: api.billing_calls >= 2)
        await pilot.press("colon", *"cl", "enter")
        await wait_for(pilot, lambda: app.query_one(StatusHeader).view == "clients" and app.view_refreshes >= 2)
        calls = api.billing_calls
        await asyncio.sleep(0.3)  # several refresh periods of the clients view
        await wait_for(pilot, lambda: app.view_refreshes >= 4)
        assert api.billing_calls == calls
        await pilot.press("colon", *"bi", "enter")
        await wait_for(pilot, lambda: api.billing_calls > calls)


async def test_a_backend_that_does_not_answer_leaves_na():
    async with make_app(FakeApi(down=True)).run_test(size=(80, 24)) as pilot:
        app = pilot.app
        await wait_for(pilot, lambda: app.refreshes >= 1)
        assert app.query_one(StatusHeader).disconnected
        assert "payments N/A" in str(app.view.query_one(BillingSummary).render())
        assert cells(app, "#table") == []
