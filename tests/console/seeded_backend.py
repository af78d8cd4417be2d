"""A real backend (router, ledger, admin API over HTTP) holding a deterministic day
(backend.localfleet.demo_seed) with its clock fixed, served from a thread of its own so that a
synchronous snapshot test can point the console's real admin client at it.

It listens on a Unix socket, so the URL in the console's header is the same on every run (a TCP
port would differ)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from sqlalchemy import insert

from backend.app import Services, create_app
from backend.billing.invoice_tables import Invoice
from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from backend.localfleet.demo_seed import DEMO_NOW_US, seed_demo
from backend.money import parse_usd
from backend.runtime.clock import set_fixed_clock
from backend.server import uvicorn_server
from backend.settings import AutoscalerSettings, PricingSettings, Settings
from console.client import AdminClient

__all__ = ["DEMO_NOW_US", "URL", "seeded_backend"]
URL = "http://seeded-backend:8640"
_DAY_US = DEMO_NOW_US - DEMO_NOW_US % 86_400_000_000


def _at(hh_mm: str, day_us: int = _DAY_US) -> int:
    hours, minutes = hh_mm.split(":")
    return day_us + (int(hours) * 60 + int(minutes)) * 60_000_000


# Stripe's side of the demo day (the Billing view): (id, client, kind, USD, status, at, refunded, Stripe's words)
PAYMENTS = (
    ("pay_demo_1", "demo-acme", "checkout", "25", "succeeded", "09:12", "5", ""),
    ("pay_demo_2", "demo-acme", "recharge", "10", "succeeded", "13:40", "0", ""),
    ("pay_demo_3", "demo-globex", "recharge", "20", "failed", "14:05", "0", "Your card was declined."),
    ("pay_demo_4", "demo-initech", "recharge", "15", "requires_action", "14:31", "0",
     "This payment requires authentication to proceed."),
    ("pay_demo_5", "demo-globex", "checkout", "50", "open", "14:50", "0", ""),
)
# (client, on, below, adds, monthly cap, card, failures in a row, in flight, why off)
RECHARGE = (("demo-acme", True, "5", "10", "100", True, 0, None, ""),
            ("demo-globex", True, "10", "20", None, True, 1, None, ""),
            ("demo-initech", False, "2", "15", None, True, 3, None, "turned off: 3 failed recharges in a row"))
# (number, client, name, usage, opening, closing): October's invoices, issued on 2 November
INVOICES = (("TM-2026-000041", "demo-acme", "Acme Corp", "31.4178", "50", "18.5822"),
            ("TM-2026-000042", "demo-globex", "Globex", "4.2010", "15", "10.7990"),
            ("TM-2026-000043", "demo-initech", "Initech", "0.5512", "5", "4.4488"))


async def seed_billing(services: Services) -> None:
    """Today's Stripe payments (two credited, one refunded in part), two failed auto-recharges,
    each client's recharge settings and October's invoices: what the Billing view shows."""
    def usd(text: str) -> int:
        return parse_usd(text, what="amount")

    rows = []
    for pid, client, kind, amount, status, at, refunded, failure in PAYMENTS:
        if status == "succeeded":
            set_fixed_clock(_at(at) + 20_000_000)  # the webhook, 20 s later
            await services.ledger.transfer(f"stripe:{pid}:credit", chart.PAYMENT_CLEARING,
                                           chart.client_account(client), usd(amount), code="stripe_payment", ref=pid)
        rows.append(dict(id=pid, client_id=client, kind=kind, amount=usd(amount), status=status,
                         idempotency_key=f"idem-{pid}", payment_intent_id=f"pi_{pid}", charge_id=f"ch_{pid}",
                         credited=usd(amount) if status == "succeeded" else 0, refunded=usd(refunded), disputed=0,
                         failure=failure, created_us=_at(at), updated_us=_at(at)))
    set_fixed_clock(_at("11:02"))
    await services.ledger.transfer("stripe:ch_pay_demo_1:re_demo_1", chart.client_account("demo-acme"),
                                   chart.PAYMENT_CLEARING, usd("5"), code="stripe_refund", ref="pay_demo_1")
    set_fixed_clock(DEMO_NOW_US)
    settings = [dict(client_id=c, stripe_customer_id=f"cus_{c}", payment_method_id=f"pm_{c}" if card else None,
                     recharge_enabled=on, recharge_threshold=usd(below), recharge_amount=usd(adds),
                     recharge_monthly_cap=usd(cap) if cap else None, recharge_failures=fails,
                     recharge_in_flight=flight, recharge_disabled_reason=why, updated_us=_at("12:00"))
                for c, on, below, adds, cap, card, fails, flight, why in RECHARGE]
    issued = _at("00:00", 1_793_577_600_000_000)  # 2026-11-02
    october = 1_790_812_800_000_000  # 2026-10-01
    invoices = [dict(seq=int(number[-6:]), number=number, client_id=client, client_name=name, period="2026-10",
                     period_start_us=october, period_end_us=1_793_491_200_000_000, issued_us=issued + i * 1_000_000,
                     opening_balance=usd(opening), closing_balance=usd(closing), usage_total=usd(usage),
                     payments_total=0, grants_total=0, refunds_total=0, business_name="Tokenmill Demo",
                     business_address="1 Demo Street")
                for i, (number, client, name, usage, opening, closing) in enumerate(INVOICES)]
    async with services.engine.begin() as conn:
        for table, values in ((Payment, rows), (ClientBilling, settings), (Invoice, invoices)):
            for v in values:
                await conn.execute(insert(table.__table__).values(**v))


@contextlib.contextmanager
def seeded_backend(data_dir: Path) -> Iterator[Callable[[], AdminClient]]:
    """Yields a factory of admin clients connected to it. The clock stays fixed at DEMO_NOW_US
    while it runs."""
    ready = threading.Event()
    state: dict = {}
    # Short: a Unix socket path must fit in 108 bytes, and pytest's tmp paths can be long.
    path = str(Path(tempfile.mkdtemp(prefix="tm-")) / "admin.sock")

    async def serve() -> None:
        # Hosts are heard once, at seeding: a long heartbeat interval keeps them up meanwhile. Pricing
        # and the autoscaler (on, to show what it wants) decide hourly: never while the tests run, so
        # what they show is the seeded day's, not the result of a run at some real instant.
        settings = Settings(data_dir=data_dir, heartbeat_interval_s=3600, pricing=PricingSettings(interval_s=3600),
                            autoscaler=AutoscalerSettings(enabled=True, interval_s=3600))
        set_fixed_clock(DEMO_NOW_US - 10 * 3_600_000_000)  # the backend starts at 05:00, before the day's traffic
        services = await Services.start(settings)
        try:
            await seed_demo(services)
            await seed_billing(services)
            # These ran at start, at 05:00; run them again now, at the seeded day's instant, so that
            # the loops view shows them at DEMO_NOW_US at once rather than after their next real-time
            # interval (up to 60 s of waiting).
            for name in ("ledger.hold_expiry", "metrics.gpu_cost"):
                services.supervisor.wake(name)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(128)
            server = uvicorn_server(create_app(settings, services=services))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            state.update(token=services.admin_token, server=server, loop=asyncio.get_running_loop())
            ready.set()
            await task
            sock.close()
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise
        finally:
            await services.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="seeded-backend", daemon=True)
    thread.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the seeded backend did not start in 60 s")
        if "error" in state:
            raise RuntimeError("the seeded backend failed to start") from state["error"]
        yield lambda: AdminClient(URL, state["token"], transport=httpx.AsyncHTTPTransport(uds=path))
    finally:
        if "loop" in state:
            state["loop"].call_soon_threadsafe(setattr, state["server"], "should_exit", True)
        thread.join(30)
        set_fixed_clock(None)
