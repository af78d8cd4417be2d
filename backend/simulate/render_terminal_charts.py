"""The simulation's charts in plain Unicode block characters: profit, utilization and price per hour.

A long run's hours are grouped into buckets so that one bucket is one column and the chart fits the
terminal; each column shows the bucket's mean (profit, utilization) or its last value (a price, which
is what the hour ended at). Colour is optional ANSI, off unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.runtime.clock import from_us
from backend.simulate.render_format import (
    fleet_total_hours,
    hour_starts,
    hours_by_model,
    mean_nano,
    models_of,
    per_mtok,
    usd,
    utc,
)
from backend.simulate.result import SimResult

UP = " ▁▂▃▄▅▆▇█"  # eighths of a cell, filled from the bottom
DOWN = " ▀█"  # halves of a cell, filled from the top: a loss hangs from the zero line
PROFIT_ROWS = 10
UTIL_ROWS = 4
PRICE_ROWS = 3
GREEN, RED, RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"
HOUR_US = 3_600_000_000


BUCKET_HOURS = (1, 2, 3, 4, 6, 8, 12, 24, 48, 72, 168, 336, 720)  # sizes that keep days whole and aligned


def buckets(n: int, cols: int) -> list[range]:
    """Split n hours into at most `cols` consecutive groups of one size (the last may be shorter): the
    smallest size that divides a day or is whole days, so that no column straddles a day unevenly."""
    if n <= 0:
        return []
    need = -(-n // max(cols, 1))
    size = next((b for b in BUCKET_HOURS if b >= need), need)
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _paint(text: str, colour: str | None) -> str:
    return f"{colour}{text}{RESET}" if colour and text.strip() else text


def _x_axis(starts: Sequence[int], groups: Sequence[range], end_us: int, pad: int, width: int) -> list[str]:
    """Tick marks at UTC midnights, and the start, end and the midnights' dates where they fit."""
    cols = len(groups)
    ticks = [" "] * cols
    labels: list[tuple[int, str]] = []
    midnights = sum(1 for s in starts if from_us(s).hour == 0)
    weekly = midnights > cols // 3  # too many days for a tick each: Mondays only
    for c, g in enumerate(groups):
        for i in g:
            when = from_us(starts[i])
            if when.hour == 0 and i > 0 and (not weekly or when.weekday() == 0):
                ticks[c] = "╵"
                labels.append((c, when.strftime("%m-%d")))
                break
    first = utc(starts[0]).removesuffix(" UTC") if starts else ""
    last = utc(end_us)
    line = list(first.ljust(max(cols, len(first))))
    # The end's label is right-aligned under the last column, or on the line below if it does not fit.
    end_at = cols - len(last)
    taken_until = len(first) + 1
    for c, text in labels:
        if c >= taken_until and c + len(text) + 1 <= (end_at if end_at > taken_until else cols):
            line[c:c + len(text)] = text
            taken_until = c + len(text) + 1
    out = [(" " * pad + "".join(ticks)).rstrip()]
    if end_at >= taken_until:
        line[end_at:end_at + len(last)] = last
        out.append(" " * pad + "".join(line).rstrip())
    else:
        out.append(" " * pad + "".join(line).rstrip())
        out.append((" " * pad + last.rjust(cols))[-width:].rstrip() if pad + cols <= width else last)
    return [o[:width] if len(o) > width else o for o in out]


def _profit_chart(result: SimResult, width: int, color: bool) -> list[str]:
    total = fleet_total_hours(result)
    starts = hour_starts(result)
    values = [total[s].profit_nano if s in total else 0 for s in starts]
    best, worst, whole = max(values, default=0), min(values, default=0), sum(values)
    labels_w = max(len(usd(best)), len(usd(worst)), len("$0.00")) + 1
    pad = labels_w + 2
    groups = buckets(len(values), width - pad)
    col_values = [mean_nano([values[i] for i in g]) for g in groups]
    top, bottom = max(max(col_values, default=0), 0), min(min(col_values, default=0), 0)
    span = (top - bottom) or 1
    unit = -(-span // PROFIT_ROWS) or 1  # nano-USD per row, one scale above and below the line
    pos_rows, neg_rows = -(-top // unit), -(bottom // unit)  # rows needed, rounded up
    per_col = "1 h" if len(groups) == len(values) else f"mean of {len(groups[0])} h"
    head = (f"Profit per hour, whole fleet (one column: {per_col})   total {usd(whole)}, "
            f"best hour {usd(best)}, worst hour {usd(worst)}")
    out = _wrap(head, width)
    for r in range(pos_rows, 0, -1):  # r-th row above the zero line, the top first
        label = usd(top) if r == pos_rows else ""
        cells = []
        for v in col_values:
            eighths = round(v * 8 / unit) if v > 0 else 0
            eighths = max(eighths, 1) if v > 0 else 0  # a small gain still shows
            cells.append(UP[min(max(eighths - (r - 1) * 8, 0), 8)])
        out.append(label.rjust(labels_w) + (" ┤" if label else " │") + _row(cells, GREEN if color else None))
    out.append("$0.00".rjust(labels_w) + " ┼" + "─" * len(col_values))
    for r in range(1, neg_rows + 1):
        label = usd(bottom) if r == neg_rows else ""
        cells = []
        for v in col_values:
            halves = max(round(-v * 2 / unit), 1) if v < 0 else 0  # a small loss still shows
            cells.append(DOWN[min(max(halves - (r - 1) * 2, 0), 2)])
        out.append(label.rjust(labels_w) + (" ┤" if label else " │") + _row(cells, RED if color else None))
    return out + _x_axis(starts, groups, result.end_us, pad, width)


def _row(cells: list[str], colour: str | None) -> str:
    return _paint("".join(cells).rstrip(), colour)


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = "  " + word
        else:
            cur = f"{cur} {word}" if cur else word
    return [*lines, cur]


def _mini(levels: Sequence[int | None], rows: int, top: str, bottom: str, labels_w: int) -> list[str]:
    """A small bar chart of `rows` cells high; each level is in eighths of a cell (None: no data, a dot)."""
    out = []
    for r in range(rows, 0, -1):
        cells = []
        for lv in levels:
            if lv is None:
                cells.append("·" if r == 1 else " ")
            else:
                cells.append(UP[min(max(lv - (r - 1) * 8, 0), 8)])
        label = top if r == rows else bottom if r == 1 else ""
        out.append(label.rjust(labels_w) + (" ┤" if label else " │") + "".join(cells).rstrip())
    return out


def _utilization_charts(result: SimResult, width: int) -> list[str]:
    by_model = hours_by_model(result)
    starts = hour_starts(result)
    labels_w = len("100%")
    pad = labels_w + 2
    groups = buckets(len(starts), width - pad)
    out = []
    for model in models_of(result):
        points = by_model.get(model, {})
        utils = [points[s].utilization if s in points else None for s in starts]
        levels: list[int | None] = []
        for g in groups:
            seen = [u for u in (utils[i] for i in g) if u is not None]
            levels.append(None if not seen else max(round(sum(seen) / len(seen) * UTIL_ROWS * 8),
                                                    1 if sum(seen) > 0 else 0))
        known = [u for u in utils if u is not None]
        summary = (f"mean {sum(known) / len(known) * 100:.0f}%, highest {max(known) * 100:.0f}%" if known
                   else "no replica served")
        out.append("")
        out += _wrap(f"Utilization per hour, {model} ({summary}; · no replica)", width)
        out += _mini(levels, UTIL_ROWS, "100%", "0%", labels_w)
    if out:
        out += _x_axis(starts, groups, result.end_us, pad, width)
    return out


def _price_charts(result: SimResult, width: int) -> list[str]:
    by_model = hours_by_model(result)
    starts = hour_starts(result)
    out = []
    series = {}
    for model in models_of(result):
        points = by_model.get(model, {})
        prices = [points[s].price_completion_per_mtok if s in points else 0 for s in starts]
        if any(prices):
            series[model] = prices
    if not series:
        return []
    labels_w = max(len(per_mtok(p)) for prices in series.values() for p in prices if p) + 1
    pad = labels_w + 2
    groups = buckets(len(starts), width - pad)
    for model, prices in series.items():
        known = [p for p in prices if p]
        lo, hi = min(known), max(known)
        out.append("")
        if lo == hi:
            out += _wrap(f"Completion price per hour, {model}: {per_mtok(lo)} throughout", width)
            continue
        out += _wrap(f"Completion price per hour, {model} (started {per_mtok(known[0])}, ended "
                     f"{per_mtok(known[-1])}; each column: the price its last hour ended at)", width)
        levels: list[int | None] = []
        for g in groups:
            last = next((prices[i] for i in reversed(g) if prices[i]), 0)
            levels.append(None if not last else 1 + round((last - lo) * (PRICE_ROWS * 8 - 1) / (hi - lo)))
        out += _mini(levels, PRICE_ROWS, per_mtok(hi), per_mtok(lo), labels_w)
        out += _x_axis(starts, groups, result.end_us, pad, width)
    return out


def render_terminal_charts(result: SimResult, *, width: int = 100, color: bool = False) -> str:
    """Profit per hour (gains above the zero line, losses below), utilization and completion price per
    hour per model, each no wider than `width` characters."""
    width = max(width, 40)
    if not hour_starts(result) or not result.hours:
        return "No hours to chart.\n"
    out = _profit_chart(result, width, color)
    out += _utilization_charts(result, width)
    out += _price_charts(result, width)
    return "\n".join(out) + "\n"
