"""The simulation's output: the terminal table and charts, the CSV files and the SVG/HTML report, on
hand-made results (tests/simulate_samples.py) whose every figure is known."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest

from backend.money import format_usd
from backend.simulate.charts_svg import price_chart, profit_chart, replicas_chart, utilization_chart, write_charts
from backend.simulate.plan import SimPlan
from backend.simulate.render_csv import write_csv
from backend.simulate.render_format import margin, mean_nano, per_day, usd_decimal
from backend.simulate.render_table import render_table
from backend.simulate.render_terminal_charts import buckets, render_terminal_charts
from backend.simulate.result import TOTAL, BreakEven, DayModelRow, HourPoint, SimResult
from backend.simulate.svg_kit import Frame, money_label, nano_ticks
from tests.simulate_samples import (
    HOUR_US,
    LOSS_HOUR,
    MODELS,
    PRICE_STEP_HOUR,
    START_US,
    STEPPED_COMPLETION,
    sample_result,
)

SVG = "{http://www.w3.org/2000/svg}"


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


def _x_of(t_us: int, start_us: int, end_us: int, f: Frame | None = None) -> float:
    """Where a time lies on a chart's x axis (Frame's default margins unless given)."""
    f = f or Frame("")
    return f.x0 + (t_us - start_us) * (f.x1 - f.x0) / (end_us - start_us)


def _hour(result: SimResult, model: str, h: int) -> HourPoint:
    return next(p for p in result.hours if p.model == model and p.start_us == START_US + h * HOUR_US)


# --- SVG: values land where they should ---------------------------------------------------------

def test_a_loss_hour_hangs_below_the_zero_line_and_a_gain_stands_on_it():
    result = sample_result(days=2)
    root = _svg(profit_chart(result))
    zero = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "zero")
    zero_y = float(zero.get("y1"))
    bars = {int(r.get("data-hour")): r for r in root.iter(f"{SVG}rect") if "bar" in (r.get("class") or "")}
    loss, gain = bars[LOSS_HOUR], bars[12]
    assert _hour(result, TOTAL, LOSS_HOUR).profit_nano < 0 < _hour(result, TOTAL, 12).profit_nano
    assert "loss" in loss.get("class") and "gain" in gain.get("class")
    assert float(loss.get("y")) == pytest.approx(zero_y, abs=0.02)  # from the line down (2-decimal pixels)
    assert float(loss.get("y")) + float(loss.get("height")) > zero_y + 5
    assert float(gain.get("y")) + float(gain.get("height")) == pytest.approx(zero_y, abs=0.02)  # up to the line
    assert float(gain.get("y")) < zero_y - 5
    # Heights are to scale: the ratio of two bars is the ratio of their profits.
    ratio = float(gain.get("height")) / float(loss.get("height"))
    assert ratio == pytest.approx(_hour(result, TOTAL, 12).profit_nano / -_hour(result, TOTAL, LOSS_HOUR).profit_nano,
                                  rel=0.01)
    # Each bar sits over its own hour.
    frame = Frame("", right=84)  # the profit chart's, with room for its right axis
    x = _x_of(START_US + 12 * HOUR_US, result.start_us, result.end_us, frame)
    x_next = _x_of(START_US + 13 * HOUR_US, result.start_us, result.end_us, frame)
    assert x <= float(gain.get("x")) < float(gain.get("x")) + float(gain.get("width")) <= x_next


def test_the_running_profit_ends_at_the_total_on_its_own_axis_sharing_zero():
    result = sample_result(days=2)
    root = _svg(profit_chart(result))
    path = next(e for e in root.iter(f"{SVG}path") if e.get("class") == "cumulative")
    coords = [tuple(map(float, p)) for p in re.findall(r"[ML]([-\d.]+) ([-\d.]+)", path.get("d"))]
    zero_y = float(next(e for e in root.iter(f"{SVG}line") if e.get("class") == "zero").get("y1"))
    assert coords[0][1] == pytest.approx(zero_y, abs=0.01)  # it starts at 0, on the bars' zero line
    assert coords[-1][0] == pytest.approx(Frame("", right=84).x1, abs=0.01)
    total = result.grand_total.profit_nano
    assert total > 0 and coords[-1][1] < zero_y  # a profitable run ends above the line
    assert format_usd(total, places=2) in "".join(root.itertext())


def _steps(d: str) -> list[tuple[float, float, float]]:
    """(x, y before, y after) of each vertical in a step path."""
    x = y = 0.0
    out = []
    for cmd, args in re.findall(r"([MHV])([-\d. ]+)", d):
        nums = [float(v) for v in args.split()]
        if cmd == "M":
            x, y = nums
        elif cmd == "H":
            x = nums[0]
        else:
            out.append((x, y, nums[0]))
            y = nums[0]
    return out


def test_a_price_change_shows_as_one_step_up_at_the_start_of_its_hour():
    result = sample_result(days=2)
    root = _svg(price_chart(result))
    paths = {(e.get("data-model"), e.get("class")): e.get("d") for e in root.iter(f"{SVG}path")}
    steps = _steps(paths[(MODELS[0], "price completion")])
    moved = [s for s in steps if abs(s[1] - s[2]) > 0.01]
    assert len(moved) == 1
    x, before, after = moved[0]
    assert x == pytest.approx(_x_of(START_US + PRICE_STEP_HOUR * HOUR_US, result.start_us, result.end_us), abs=0.01)
    assert after < before  # a higher price is drawn higher up
    # The prompt price and the other model's prices did not change: flat lines.
    assert not [s for s in _steps(paths[(MODELS[0], "price prompt")]) if abs(s[1] - s[2]) > 0.01]
    assert not [s for s in _steps(paths[(MODELS[1], "price completion")]) if abs(s[1] - s[2]) > 0.01]
    labels = {e.text: float(e.get("y")) - 4 for e in root.iter(f"{SVG}text")}  # the y axis' labels
    per_usd = (labels["$0.00"] - labels["$0.50"]) / 0.5  # pixels per dollar
    assert before == pytest.approx(labels["$0.00"] - 0.20 * per_usd, abs=0.05)
    assert after == pytest.approx(labels["$0.00"] - STEPPED_COMPLETION / 1e9 * per_usd, abs=0.05)


def test_utilization_lines_break_where_no_replica_served_and_decisions_are_marked_at_their_time():
    result = sample_result(days=2)
    root = _svg(utilization_chart(result))
    line = next(e for e in root.iter(f"{SVG}path") if e.get("data-model") == MODELS[0])
    assert line.get("d").count("M") == 3  # hour 3 of each day has no replica: broken twice
    labels = {e.text: float(e.get("y")) - 4 for e in root.iter(f"{SVG}text")}  # the y axis' labels
    ys = [float(v) for v in re.findall(r"[ML][-\d.]+ ([-\d.]+)", line.get("d"))]
    assert all(labels["100%"] <= y <= labels["0%"] for y in ys)
    assert min(ys) < labels["25%"] and max(ys) > labels["75%"]
    markers = [e for e in root.iter(f"{SVG}polygon") if "decision" in (e.get("class") or "")]
    assert len(markers) == len(result.decisions)
    up = next(m for m in markers if "autoscale-scale_up" in m.get("class"))
    tip = up.find(f"{SVG}title").text
    assert "utilization 0.91" in tip and MODELS[0] in tip
    apex_x = float(up.get("points").split()[0].split(",")[0])
    assert apex_x == pytest.approx(_x_of(result.decisions[0].at_us, result.start_us, result.end_us), abs=0.01)


def test_replicas_stack_by_model_up_to_the_fleet():
    result = sample_result(days=2)
    root = _svg(replicas_chart(result))
    areas = {e.get("data-model"): e.get("d") for e in root.iter(f"{SVG}path") if e.get("class") == "replicas"}
    assert set(areas) == set(MODELS)
    top_y = min(float(v) for v in re.findall(r"V([-\d.]+)", areas[MODELS[1]]))
    peak_y = min(float(v) for v in re.findall(r"V([-\d.]+)", areas[MODELS[0]]))
    assert top_y < peak_y  # the second model stands on the first
    assert "Peak 4.0 replicas" in "".join(root.itertext())


def test_write_charts_writes_each_svg_and_a_self_contained_page(tmp_path: Path):
    result = sample_result(days=3)
    paths = write_charts(result, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["price.svg", "profit.svg", "replicas.svg", "report.html",
                                             "utilization.svg"]
    for p in paths:
        if p.suffix == ".svg":
            assert _svg(p.read_text()).tag == f"{SVG}svg"
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<svg ") == 4
    assert "<script" not in page.lower() and "https://" not in page
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}  # a namespace only
    assert re.search(r"(src|href)=", page) is None  # nothing loaded
    for text in ("demand business", "seed 1", "1x rtx4090 (vast)", format_usd(result.grand_total.profit_nano, places=2),
                 "26.9%", "utilization 0.91 above 0.80"):
        assert text in page


# --- CSV ----------------------------------------------------------------------------------------

def _nano(text: str) -> int:
    assert re.fullmatch(r"-?\d+\.\d{9}", text), text  # decimal USD, never exponent or float noise
    value = Decimal(text) * 1_000_000_000
    assert value == value.to_integral_value()
    return int(value)


def test_csv_reads_back_to_the_same_integers(tmp_path: Path):
    result = sample_result(days=3)
    paths = write_csv(result, tmp_path)
    assert [p.name for p in paths] == ["days.csv", "hours.csv", "break_even.csv", "decisions.csv"]
    with (tmp_path / "days.csv").open() as f:
        days = list(csv.DictReader(f))
    rows = [*result.days, *result.totals]
    assert len(days) == len(rows)
    for line, row in zip(days, rows, strict=True):
        assert (line["day"], line["model"]) == (row.day, row.model)
        assert int(line["requests"]) == row.requests and int(line["tokens"]) == row.tokens
        assert _nano(line["revenue_usd"]) == row.revenue_nano
        assert _nano(line["gpu_cost_usd"]) == row.gpu_cost_nano
        assert _nano(line["payouts_usd"]) == row.payouts_nano
        assert _nano(line["profit_usd"]) == row.profit_nano
        assert line["margin_bps"] == ("" if row.margin_bps is None else str(row.margin_bps))
    assert days[-1]["day"] == days[-1]["model"] == TOTAL
    assert any(_nano(line["profit_usd"]) < 0 for line in days)  # losses keep their sign
    with (tmp_path / "hours.csv").open() as f:
        hours = list(csv.DictReader(f))
    assert len(hours) == len(result.hours)
    for line, h in zip(hours, result.hours, strict=True):
        assert _nano(line["profit_usd"]) == h.profit_nano
        assert _nano(line["price_completion_usd_per_mtok"]) == h.price_completion_per_mtok
    assert hours[0]["hour_utc"] == "2026-01-05T00:00:00Z"
    with (tmp_path / "break_even.csv").open() as f:
        be = list(csv.DictReader(f))
    assert be[0]["break_even_utilization"] == "0.269200" and be[1]["break_even_utilization"] == ""
    assert _nano(be[0]["cost_per_hour_usd"]) == 350_000_000
    with (tmp_path / "decisions.csv").open() as f:
        decisions = list(csv.DictReader(f))
    assert [d["kind"] for d in decisions] == [d.kind for d in result.decisions]


def test_money_text_is_exact():
    assert usd_decimal(-1) == "-0.000000001"
    assert usd_decimal(12_345_678_900_000_000_001) == "12345678900.000000001"
    assert margin(-1234) == "-12.3%" and margin(5) == "0.1%" and margin(None) == "-"
    day = 86_400_000_000
    assert per_day(10_000_000_001, 0, 3 * day) == 3_333_333_334 and per_day(-7, 0, 2 * day) == -3
    assert per_day(5, 0, 12 * HOUR_US) == 10 and mean_nano([1, 2]) == 2 and mean_nano([]) == 0
    ticks, step = nano_ticks(-2_750_000_000, 2_890_000_000, 3)
    assert step == 2_000_000_000 and ticks == [-2_000_000_000, 0, 2_000_000_000]
    assert nano_ticks(-7, 13, 4) == ([-5, 0, 5, 10], 5)
    assert money_label(-2_000_000_000, step) == "-$2" and money_label(500_000_000, 500_000_000) == "$0.50"
    assert money_label(5_000_000, 5_000_000) == "$0.005"


# --- the terminal -------------------------------------------------------------------------------

def test_the_table_holds_the_figures():
    result = sample_result(days=3)
    text = render_table(result, width=120)
    assert all(len(line) <= 120 for line in text.splitlines())
    grand = result.grand_total
    for figure in (f"{grand.requests:,}", format_usd(grand.revenue_nano, places=2),
                   format_usd(grand.gpu_cost_nano, places=2), format_usd(grand.profit_nano, places=2),
                   "2026-01-05", "2026-01-07", "26.9%", "41.0%", "never", "3 decisions",
                   "autoscale.scale_up 1", "2026-01-05 02:01 UTC", "Demand assumed",
                   format_usd(per_day(grand.profit_nano, result.start_us, result.end_us), places=2) + "/day"):
        assert figure in text, figure
    day_loss = next(r for r in result.days if r.profit_nano < 0)
    assert "-$" + format_usd(-day_loss.profit_nano, places=2)[1:] in text  # a loss reads negative
    for r in result.totals:
        assert format_usd(r.profit_nano, places=2) in text


def test_a_narrow_table_drops_detail_columns_not_figures():
    text = render_table(sample_result(days=2), width=90)
    header = next(line for line in text.splitlines() if line.startswith("Day "))
    assert "Profit" in header and "Revenue" in header and "Failed" not in header
    assert all(len(line) <= 90 for line in text.splitlines())


def test_the_first_ten_decisions_are_listed_with_their_count():
    result = sample_result(days=1)
    first = result.decisions[0]
    result.decisions = [type(first)(first.at_us + i * 60_000_000, first.kind, first.subject, f"reason {i}")
                        for i in range(25)]
    text = render_table(result)
    assert "25 decisions: autoscale.scale_up 25" in text
    assert "reason 9" in text and "reason 10" not in text


@pytest.mark.parametrize("width", [60, 100, 160])
def test_a_month_of_hours_fits_the_terminal(width: int):
    text = render_terminal_charts(sample_result(days=30), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "2026-01-05 00:00" in text and "2026-02-04 00:00 UTC" in text


def test_terminal_profit_bars_rise_for_gains_and_hang_for_losses():
    result = sample_result(days=1)
    lines = render_terminal_charts(result, width=100).splitlines()
    zero = next(i for i, line in enumerate(lines) if "┼" in line)
    col0 = lines[zero].index("┼") + 1  # one column per hour at this width
    above = [line[col0 + LOSS_HOUR] if len(line) > col0 + LOSS_HOUR else " " for line in lines[1:zero]]
    below = lines[zero + 1][col0 + LOSS_HOUR]
    assert set(above) <= {" "} and below in "▀█"
    assert lines[zero - 1][col0 + 12] != " " and lines[zero + 1][col0 + 12] == " "


def test_coloured_charts_only_when_asked():
    result = sample_result(days=1)
    assert "\x1b[" not in render_terminal_charts(result)
    assert "\x1b[31m" in render_terminal_charts(result, color=True)


def test_buckets_keep_whole_days_and_fit():
    groups = buckets(720, 80)
    assert len(groups) <= 80 and len(groups[0]) == 12 and sum(len(g) for g in groups) == 720
    assert buckets(5, 80) == [range(i, i + 1) for i in range(5)] and buckets(0, 10) == []


# --- degenerate inputs --------------------------------------------------------------------------

def _render_all(result: SimResult, out: Path) -> None:
    assert render_table(result)
    assert render_terminal_charts(result)
    write_csv(result, out)
    for p in write_charts(result, out):
        if p.suffix == ".svg":
            _svg(p.read_text())


def test_one_hour_renders(tmp_path: Path):
    result = sample_result(hours=1)
    _render_all(result, tmp_path)
    text = render_terminal_charts(result, width=60)
    assert max(len(line) for line in text.splitlines()) <= 60


def test_a_model_that_earned_nothing_renders(tmp_path: Path):
    result = sample_result(days=1, models=(MODELS[0],))
    dead = [HourPoint(h.start_us, h.model, 0, 0, h.gpu_cost_nano, 0, -h.gpu_cost_nano, None, 0.0, 0, 0)
            for h in result.hours]
    zero_day = DayModelRow("2026-01-05", MODELS[0], 0, 0, 0, 0, None, 0.0, 0, 8_400_000_000, 0, -8_400_000_000,
                           None)
    result.hours, result.days = dead, [zero_day]
    result.totals = [DayModelRow(TOTAL, MODELS[0], 0, 0, 0, 0, None, 0.0, 0, 8_400_000_000, 0, -8_400_000_000, None),
                     DayModelRow(TOTAL, TOTAL, 0, 0, 0, 0, None, 0.0, 0, 8_400_000_000, 0, -8_400_000_000, None)]
    result.break_even = [BreakEven(MODELS[0], "rtx4090", "RTX 4090", 1, "vast", 350_000_000, 0.0, 0, None, None)]
    result.decisions, result.price_changes = [], 0
    _render_all(result, tmp_path)
    text = render_table(result)
    assert "-$8.40" in text and "never" in text and "No scaling decisions." in text
    assert "no replica served" in render_terminal_charts(result)


def test_an_empty_result_renders(tmp_path: Path):
    empty = SimResult(plan=SimPlan(), start_us=START_US, end_us=START_US, days=[], totals=[], break_even=[],
                      decisions=[], hours=[], price_changes=0, mean_prompt_tokens=0.0, mean_completion_tokens=0.0)
    _render_all(empty, tmp_path)
    assert "No days." in render_table(empty)
