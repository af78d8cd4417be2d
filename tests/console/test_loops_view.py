"""The loops view against a real backend: Enter shows one loop whole (what the table leaves out:
its completed runs, what it starts after, the error in full); Esc goes back."""

from __future__ import annotations

import io

from rich.console import Console
from textual.widgets import Static

from console.app import TokenmillApp
from tests.console.seeded_backend import DEMO_NOW_US, seeded_backend


async def _settle(pilot, after: int = 0) -> None:
    app = pilot.app
    while app.refreshes <= after or app._refreshing:
        await pilot.pause(0.01)
    await pilot.pause()


async def test_enter_shows_the_loop_whole_and_esc_goes_back(tmp_path):
    with seeded_backend(tmp_path) as backend:
        app = TokenmillApp(backend(), simulated=True, refresh_s=3600, clock_us=lambda: DEMO_NOW_US,
                           initial_view="loops", owns_api=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await _settle(pilot)
            view = app.view
            loops = ["ledger.hold_expiry", "fleet.health", "metrics.load", "pricing.update", "metrics.gpu_cost",
                     "metrics.gpu_cost_ledger", "billing.payouts", "autoscaler.decide", "billing.invoices"]
            assert [key for key, _ in view.rows] == loops
            await pilot.press(*["down"] * loops.index("metrics.gpu_cost"))
            before = app.refreshes
            await pilot.press("enter")
            await _settle(pilot, before)
            assert view.detail_key == "metrics.gpu_cost"
            detail = view.query_one("#loop", Static)
            console = Console(width=120, file=io.StringIO(), record=True)
            console.print(detail.content)  # the rich table the view drew
            shown = console.export_text()
            for text in ("metrics.gpu_cost", "every 5s", "starts after", "fleet.health", "completed runs",
                         "last error"):
                assert text in shown
            await pilot.press("escape")
            assert view.detail_key is None
