"""Every view against fixed data and a frozen clock: 120x40, and the overview at 80x24."""

from __future__ import annotations

import pytest

from console.app import TokenmillApp
from console.client import BackendUnavailable
from tests.console.fake_client import NOW_US, FakeAdmin


def _app(view: str, **kw) -> TokenmillApp:
    return TokenmillApp(FakeAdmin(), simulated=True, refresh_s=3600, clock_us=lambda: NOW_US, initial_view=view,
                        **kw)


async def _settle(pilot) -> None:
    app = pilot.app
    while app.refreshes < 1 or app._refreshing:
        await pilot.pause(0.01)
    await pilot.pause()


@pytest.mark.parametrize("view", ["overview", "models", "fleet", "clients", "events"])
def test_view_120x40(snap_compare, view):
    assert snap_compare(_app(view), terminal_size=(120, 40), run_before=_settle)


def test_overview_80x24(snap_compare):
    assert snap_compare(_app("overview"), terminal_size=(80, 24), run_before=_settle)


def test_fleet_readonly_80x24(snap_compare):
    assert snap_compare(_app("fleet", readonly=True), terminal_size=(80, 24), run_before=_settle)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app("fleet"), terminal_size=(120, 40), run_before=run_before)


def test_overview_80x24_no_color(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # read when the App is built
    assert snap_compare(_app("overview"), terminal_size=(80, 24), run_before=_settle)


def test_disconnected_header(snap_compare):
    class Down(FakeAdmin):
        async def hosts(self):
            raise BackendUnavailable("down")

    app = TokenmillApp(Down(), refresh_s=3600, clock_us=lambda: NOW_US, initial_view="fleet")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)


@pytest.mark.parametrize("view", ["fleet", "models"])
def test_enter_drills_down(snap_compare, view):
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(_app(view), terminal_size=(120, 40), run_before=run_before)
