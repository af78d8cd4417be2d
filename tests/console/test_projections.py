"""The overview's projections panel, read as text from the real console against a real backend
holding the seeded day (fixed clock), equals the admin API's answer; and the target bar reads
without colour (so far, projected, the rest; a loss fills nothing)."""

from __future__ import annotations

import msgspec
import pytest
from rich.console import Console
from textual.widgets import Static

from backend.wire.projections import ModelBreakEvenOut, PeriodProjectionOut, ProjectionsOut
from console.app import TokenmillApp
from console.figures import share
from console.money import usd
from console.widgets.projections import BAR_CELLS, ProjectionsPanel, bar, duration, target_line
from tests.console.seeded_backend import DEMO_NOW_US, seeded_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with seeded_backend(tmp_path_factory.mktemp("seeded")) as admin_client:
        yield admin_client


def _text(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _lines(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


async def _panel_text(backend, size: tuple[int, int]) -> tuple[str, str, str, bool]:
    app = TokenmillApp(backend(), simulated=True, refresh_s=3600, clock_us=lambda: DEMO_NOW_US,
                       initial_view="overview", owns_api=True)
    async with app.run_test(size=size) as pilot:
        while app.refreshes < 1 or app._refreshing:
            await pilot.pause(0.01)
        panel = app.query_one(ProjectionsPanel)
        texts = [_text(panel.query_one(f"#proj-{part}", Static).content) for part in ("target", "money", "break-even")]
        return texts[0], texts[1], texts[2], panel.has_class("narrow")


async def test_panel_shows_the_admin_apis_projections(backend):
    target, money, break_even, narrow = await _panel_text(backend, (120, 40))
    api = backend()
    p = await api.projections()
    await api.aclose()
    assert not narrow  # 120 columns: break-even beside the money

    rows = _lines(money)
    for label, so_far, projected in (
            ("revenue", lambda q: q.revenue_nano, lambda q: q.projected_revenue_nano),
            ("cost", lambda q: q.payouts_nano + q.gpu_cost_nano,
             lambda q: q.projected_payouts_nano + q.projected_gpu_cost_nano),
            ("profit", lambda q: q.profit_nano, lambda q: q.projected_profit_nano)):
        cells = [f"{usd(so_far(q))} → {usd(projected(q))}" for q in (p.day, p.month)]
        line = rows[label].rstrip()
        assert line.endswith(cells[1]) and cells[0] in line.removesuffix(cells[1])  # today, then the month
    # The seeded backend started at 05:00: the day rests on the last hour, the month on 10 h (under a
    # whole day: tentative).
    assert p.day.observed_s == 3600 and p.month.observed_s == 10 * 3600
    assert "today, on 1h" in money and "month, on 10h (tentative)" in money

    assert "none set" in target and p.profit_target_daily_nano == 0
    be = _lines(break_even)
    assert p.models and {m.model for m in p.models} <= set(be)
    for m in p.models:
        assert m.break_even_utilization is not None  # the seeded hosts report GPU types and measured speeds
        cells = be[m.model].split()
        assert cells[1:3] == [share(m.break_even_utilization), share(m.utilization)]
        assert cells[3:] == [str(m.replicas), f"{usd(m.gpu_cost_per_h_nano)}/h"]


async def test_narrow_terminal_puts_break_even_under_the_money(backend):
    *_, narrow = await _panel_text(backend, (80, 24))
    assert narrow


def _period(period: str, observed_s: float) -> PeriodProjectionOut:
    return PeriodProjectionOut(period, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, "last_hour", 0, 3600.0, observed_s, 0.0)


def test_target_bar_reads_without_colour():
    assert bar(0.25, 0.6) == "█" * 5 + "▒" * 7 + "░" * 8
    assert bar(-0.5, -0.2) == "░" * BAR_CELLS  # a loss fills nothing
    assert bar(1.4, 2.0) == "█" * BAR_CELLS  # beyond the target: full
    assert bar(0.5, 0.3) == "█" * 10 + "░" * 10  # projected below what is made so far: nothing ahead
    p = ProjectionsOut(0, _period("day", 3600), _period("month", 3600), 5_000_000_000, 0.25, 0.6, [])
    assert target_line(p) == f"target $5.0000/day  {bar(0.25, 0.6)}  25% so far, 60% projected"
    none = ProjectionsOut(0, _period("day", 3600), _period("month", 3600), 0, None, None, [])
    assert "none set" in target_line(none) and "█" not in target_line(none)


def test_durations():
    assert [duration(s) for s in (0, 299, 3600, 3660, 36_000, 47 * 3600, 3 * 86_400)] == [
        "0m", "4m", "1h", "1h01m", "10h", "47h", "3d"]


async def test_wide_figures_move_break_even_under_the_money_rather_than_clip_it():
    """At 120 columns the tables fit side by side with the seeded day's figures, but not with a
    month of four-figure costs and long model names: then break-even goes under the money (a fixed
    width threshold clipped its last column)."""
    from textual.app import App

    big = msgspec.structs.replace(_period("month", 36_000), gpu_cost_nano=1_121_364_600_000,
                                  projected_gpu_cost_nano=12_121_364_600_000,
                                  projected_profit_nano=-11_934_422_500_000)
    models = [ModelBreakEvenOut(model=f"qwen2.5-0.5b-instruct-long-{i}", replicas=2, hosts=["h1", "h2"],
                                gpu_cost_per_h_nano=1_013_800_000, prompt_per_mtok_nano=1, completion_per_mtok_nano=1,
                                mean_prompt_tokens=400.0, mean_completion_tokens=200.0, mix_from="default",
                                revenue_per_h_at_full_nano=1, break_even_utilization=17.68, utilization=1.12, note="")
              for i in range(3)]
    p = ProjectionsOut(0, _period("day", 3600), big, 0, None, None, models)

    class One(App):
        def compose(self):
            yield ProjectionsPanel()

    app = One()
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.query_one(ProjectionsPanel)
        panel.show(p)
        await pilot.pause()
        assert panel.has_class("narrow")
        for part in ("money", "break-even"):
            region = panel.query_one(f"#proj-{part}", Static).region
            assert region.right <= 120
