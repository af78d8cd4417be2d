"""Every view, drawn by the real console through its real admin client, against a real backend
holding a deterministic day (fixed clock, seeded traffic, prices moved, one pinned, one model's
replica limits set): 120x40, and the overview at 80x24."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import Footer

from console.app import TokenmillApp
from console.client import AdminClient
from console.widgets.command import CommandLine
from tests.console.seeded_backend import DEMO_NOW_US, URL, seeded_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with seeded_backend(tmp_path_factory.mktemp("seeded")) as admin_client:
        yield admin_client


def _app(backend, view: str, **kw) -> TokenmillApp:
    return TokenmillApp(backend(), simulated=True, refresh_s=3600, clock_us=lambda: DEMO_NOW_US,
                        initial_view=view, owns_api=True, **kw)


async def _settle(pilot, after: int = 0) -> None:
    """Wait until a refresh that started after `after` completed refreshes has finished."""
    app = pilot.app
    while app.refreshes <= after or app._refreshing:
        await pilot.pause(0.01)
    await pilot.pause()


def test_loops_120x40(snap_compare, backend):
    """The supervisor's loops. Drawn once the periodic loops have run at the fixed clock's instant
    (they run on real time, so the first seconds differ from run to run; the backend wakes them when
    seeded); the health check, every hour on these settings, has not run yet. First in this module,
    so drawn within seconds of the backend's start: the GPU cost poster first runs a minute in, and
    would then show a last run."""
    async def run_before(pilot):
        await _settle(pilot)

        async def ran_now() -> bool:
            loops = {x.name: x for x in await pilot.app.api.loops()}
            return all(loops[n].last_run_us == DEMO_NOW_US for n in ("ledger.hold_expiry", "metrics.gpu_cost"))

        while not await ran_now():
            await pilot.pause(0.1)
        before = pilot.app.refreshes
        pilot.app.request_refresh()
        await _settle(pilot, before)

    assert snap_compare(_app(backend, "loops"), terminal_size=(120, 40), run_before=run_before)


@pytest.mark.parametrize("view", ["overview", "models", "fleet", "clients", "billing", "events", "provision"])
def test_view_120x40(snap_compare, backend, view):
    assert snap_compare(_app(backend, view), terminal_size=(120, 40), run_before=_settle)


def test_overview_80x24(snap_compare, backend):
    assert snap_compare(_app(backend, "overview"), terminal_size=(80, 24), run_before=_settle)


def test_billing_80x24(snap_compare, backend):
    """Today's payments, refunds and failed recharges, the month's invoices, each client's settings."""
    assert snap_compare(_app(backend, "billing"), terminal_size=(80, 24), run_before=_settle)


def test_overview_80x24_no_color(snap_compare, backend, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # read when the App is built
    assert snap_compare(_app(backend, "overview"), terminal_size=(80, 24), run_before=_settle)


def test_fleet_readonly_80x24(snap_compare, backend):
    assert snap_compare(_app(backend, "fleet", readonly=True), terminal_size=(80, 24), run_before=_settle)


def test_help_screen(snap_compare, backend):
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(backend, "fleet"), terminal_size=(120, 40), run_before=run_before)


# The models: one priced by the engine through the day (its factors and history), one the autoscaler
# is short of (the operator's minimum is above what it has).
@pytest.mark.parametrize(("view", "row"), [("fleet", "rig-b"), ("models", "llama-3.1-8b"),
                                           ("models", "qwen2.5-0.5b"), ("billing", "globex")])
def test_filter_then_enter_drills_down(snap_compare, backend, view, row):
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("slash", *row, "enter")  # `/` narrows the table to that row
        await pilot.pause()
        before = pilot.app.refreshes
        await pilot.press("enter")
        await _settle(pilot, before)

    assert snap_compare(_app(backend, view), terminal_size=(120, 40), run_before=run_before)


def test_disconnected_header(snap_compare, tmp_path):
    # Nothing listens at that socket: the same refused connection as a backend that went away.
    gone = AdminClient(URL, "tma-x", timeout_s=2, transport=httpx.AsyncHTTPTransport(uds=str(tmp_path / "gone.sock")))
    app = TokenmillApp(gone, refresh_s=3600, clock_us=lambda: DEMO_NOW_US, initial_view="fleet", owns_api=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
@pytest.mark.parametrize(("mode", "typed"), [("colon", "fle"), ("slash", "rig")], ids=["command", "filter"])
def test_prompt_shows_what_is_typed(snap_compare, backend, size, mode, typed):
    """What one types at `:` and `/` shows on the prompt line (Textual 8.2.8 drew only its border)."""
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press(mode, *typed)
        await pilot.pause()
        line = pilot.app.query_one(CommandLine)
        assert typed in line.render_line(0).text  # drawn in its one row, not only held as its value
        assert not line.region.overlaps(pilot.app.query_one(Footer).region)  # nor under the footer
        assert str(pilot.app.query_one("#command-mode").render()) == {"colon": ":", "slash": "/"}[mode]

    assert snap_compare(_app(backend, "fleet"), terminal_size=size, run_before=run_before)


def test_models_80x24_scrolled_right(snap_compare, backend):
    """The model's name stays while the money columns scroll; the footer keeps `q`."""
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press(*["right"] * 12)
        await pilot.pause()

    assert snap_compare(_app(backend, "models"), terminal_size=(80, 24), run_before=run_before)


def test_event_detail_and_filter_120x40(snap_compare, backend):
    """`/` narrows the events (the filter shows on the top line), Enter shows one whole."""
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("slash", *"rig-b", "enter")
        await pilot.pause()
        before = pilot.app.refreshes
        await pilot.press("enter")
        await _settle(pilot, before)

    assert snap_compare(_app(backend, "events"), terminal_size=(120, 40), run_before=run_before)
