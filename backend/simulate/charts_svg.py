"""The simulation's charts as hand-written SVG: profit, utilization, price and replicas per hour.

Every chart shares one time axis: hour i of the run spans [start_i, start_i + 1 h) on the x axis.
A price is what the hour ended at (HourPoint), drawn over that hour: a change shows as a step at the
start of the hour it happened in. `write_charts` writes each chart as its own .svg and report.html,
one self-contained page with them inline (no script, nothing fetched).
"""

from __future__ import annotations

from pathlib import Path

from backend.simulate.render_format import (
    fleet_total_hours,
    hour_starts,
    hours_by_model,
    models_of,
    usd,
    utc,
)
from backend.simulate.report_html import report_page
from backend.simulate.result import SimResult
from backend.simulate.svg_kit import (
    HOUR_US,
    MUTED,
    Frame,
    Scale,
    el,
    marker,
    money_label,
    nano_ticks,
    nice_ticks,
    polyline_path,
    step_path,
    tooltip,
)

PALETTE = ("#2f6fdb", "#e8871e", "#8a55d6", "#17a08c", "#d6457a", "#6f8f1f", "#8c6d4f", "#5a6b7d")
GAIN, LOSS, CUMULATIVE = "#2ea160", "#d9483b", "#1f2328"
OTHER_DECISION = "#8c959f"


def model_colours(result: SimResult) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models_of(result))}


def _x_scale(result: SimResult, f: Frame) -> tuple[Scale, int, int]:
    starts = hour_starts(result)
    start = min(starts[0], result.start_us) if starts else result.start_us
    end = max(result.end_us, starts[-1] + HOUR_US if starts else start + HOUR_US)
    return Scale(start, end, f.x0, f.x1), start, end


def _share_below(values: list[int], running: list[int]) -> float:
    """The share of the plot under the zero line: the bars' own split of gains and losses. The running
    total fits any split the bars allow on its own axis: it falls below zero only if some bar does,
    and rises above only if some bar does."""
    neg, pos = -min(min(values, default=0), 0), max(max(values, default=0), 0)
    if neg + pos:
        return neg / (neg + pos)
    neg, pos = -min(min(running, default=0), 0), max(max(running, default=0), 0)
    return neg / (neg + pos) if neg + pos else 0.0


def _domain(neg: int, pos: int, below: float) -> tuple[int, int]:
    """[lo, hi] around zero with `below` of the height under zero, holding -neg..pos, padded 8 %."""
    if below >= 1.0:
        size = float(neg)
    elif below <= 0.0:
        size = float(pos)
    else:
        size = max(neg / below, pos / (1 - below))
    size = max(int(size * 1.08), 1)
    return -round(size * below), size - round(size * below)


def profit_chart(result: SimResult) -> str:
    """Bars of the fleet's profit per hour (green gains above zero, red losses below) and the running
    profit as a line on its own axis (right), whose zero is the same line."""
    total = fleet_total_hours(result)
    starts = hour_starts(result)
    values = [total[s].profit_nano if s in total else 0 for s in starts]
    running, acc = [], 0
    for v in values:
        acc += v
        running.append(acc)
    f = Frame("Profit per hour, whole fleet", right=84,
              subtitle=f"Total {usd(acc)}; best hour {usd(max(values, default=0))}, "
                       f"worst hour {usd(min(values, default=0))}",
              legend=[("box", GAIN, "gain"), ("box", LOSS, "loss"), ("line", CUMULATIVE, "running total (right axis)")])
    x, start, end = _x_scale(result, f)
    below = _share_below(values, running)
    lo, hi = _domain(-min(min(values, default=0), 0), max(max(values, default=0), 0), below)
    clo, chi = _domain(-min(min(running, default=0), 0), max(max(running, default=0), 0), below)
    y = Scale(lo, hi, f.y0, f.y1)
    yc = Scale(clo, chi, f.y0, f.y1)
    ticks, step = nano_ticks(lo, hi)
    f.y_axis(y, [(t, money_label(t, step)) for t in ticks])
    cticks, cstep = nano_ticks(clo, chi)
    f.y_axis(yc, [(t, money_label(t, cstep)) for t in cticks], side="right", colour=CUMULATIVE, grid=False)
    f.time_axis(x, start, end)
    zero = y(0)
    gap = 0.15 if len(starts) <= 400 else 0.0  # thin gaps between bars while they are wide enough to see
    for i, (s, v) in enumerate(zip(starts, values, strict=True)):
        if v == 0:
            continue
        x0, x1 = x(s), x(s + HOUR_US)
        w = max((x1 - x0) * (1 - gap), 0.6)
        top, bottom = (y(v), zero) if v > 0 else (zero, y(v))
        f.add(el("rect", tooltip(f"{utc(s)}: {usd(v)}"), class_="bar " + ("gain" if v > 0 else "loss"),
                 data_hour=i, data_profit_nano=v, x=x0 + (x1 - x0 - w) / 2, y=top,
                 width=w, height=max(bottom - top, 0.5), fill=GAIN if v > 0 else LOSS,
                 shape_rendering="crispEdges" if gap == 0 else None))  # thin bars: no anti-aliased seams
    f.add(el("line", class_="zero", x1=f.x0, x2=f.x1, y1=zero, y2=zero, stroke="#57606a", stroke_width=1))
    line = polyline_path((x(s + HOUR_US), yc(r)) for s, r in zip(starts, running, strict=True))
    if starts:
        line = f"M{x(starts[0]):.2f} {yc(0):.2f}" + line.replace("M", "L", 1)
    f.add(el("path", class_="cumulative", d=line, fill="none", stroke=CUMULATIVE, stroke_width=2,
             stroke_linejoin="round"))
    return f.finish()


DECISION_SHAPES = {"autoscale.scale_up": "up", "autoscale.resume": "up", "host.provisioned": "up",
                   "autoscale.scale_down": "down", "autoscale.teardown": "down"}


def utilization_chart(result: SimResult) -> str:
    """Each model's utilization per hour as a line (a gap where no replica served), and the
    autoscaler's decisions as markers along the top, in the colour of the model they concern."""
    colours = model_colours(result)
    legend = [("line", c, m) for m, c in colours.items()]
    legend += [("up", OTHER_DECISION, "more capacity"), ("down", OTHER_DECISION, "less"),
               ("dot", OTHER_DECISION, "other")]
    n = len(result.decisions)
    f = Frame("Utilization per hour", legend=legend, extra_top=16,
              subtitle=f"{n} scaling decision{'s' if n != 1 else ''} (markers above the plot, in the colour of "
                       "their model; hover for the reason)" if n else "No scaling decisions")
    x, start, end = _x_scale(result, f)
    y = Scale(0.0, 1.0, f.y0, f.y1)
    f.y_axis(y, [(v, f"{v * 100:.0f}%") for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    f.time_axis(x, start, end)
    by_model = hours_by_model(result)
    starts = hour_starts(result)
    for model, colour in colours.items():
        points = by_model.get(model, {})
        pts = []
        for s in starts:
            u = points[s].utilization if s in points else None
            pts.append(None if u is None else (x(s + HOUR_US / 2), y(min(max(u, 0.0), 1.0))))
        f.add(el("path", class_="utilization", data_model=model, d=polyline_path(pts), fill="none",
                 stroke=colour, stroke_width=2, stroke_linejoin="round"))
        if len(pts) == 1 and pts[0] is not None:  # one hour: a line of one point would not show
            f.add(el("circle", cx=pts[0][0], cy=pts[0][1], r=3.5, fill=colour))
    for d in sorted(result.decisions, key=lambda d: d.at_us):
        shape = DECISION_SHAPES.get(d.kind, "other")
        colour = colours[model] if (model := _model_of(d.subject, d.message, colours)) else OTHER_DECISION
        px = x(min(max(d.at_us, start), end))
        f.add(el("line", x1=px, x2=px, y1=f.y1, y2=f.y0, stroke=colour, stroke_opacity=0.25, stroke_width=1),
              marker(shape, colour, px, f.y1 - 8, tooltip(f"{utc(d.at_us)} {d.kind} {d.subject}: {d.message}"),
                     class_=f"decision {d.kind.replace('.', '-')}", data_at_us=d.at_us))
    return f.finish()


def _model_of(subject: str, message: str, models: dict[str, str]) -> str | None:
    """The model a decision concerns: its subject, else the longest model id its reason names (a
    host's event says what it serves)."""
    if subject in models:
        return subject
    named = [m for m in models if m in message]
    return max(named, key=len) if named else None


def price_chart(result: SimResult) -> str:
    """Each model's price per million tokens, per hour, as step lines: completion solid, prompt dashed."""
    colours = model_colours(result)
    legend = [("line", c, m) for m, c in colours.items()]
    legend += [("line", MUTED, "completion"), ("dash", MUTED, "prompt")]
    n = result.price_changes
    f = Frame("Price per million tokens", legend=legend,
              subtitle=f"{n} price change{'s' if n != 1 else ''}; each hour at the price it ended at")
    x, start, end = _x_scale(result, f)
    by_model = hours_by_model(result)
    starts = hour_starts(result)
    series: dict[str, list[tuple[int, int] | None]] = {}
    for model in colours:
        points = by_model.get(model, {})
        series[model] = [(points[s].price_prompt_per_mtok, points[s].price_completion_per_mtok)
                         if s in points and (points[s].price_prompt_per_mtok or points[s].price_completion_per_mtok)
                         else None for s in starts]  # 0 and 0: no price known that hour
    top = max((max(p) for ps in series.values() for p in ps if p), default=0)
    hi = max(int(top * 1.12), 1)
    y = Scale(0, hi, f.y0, f.y1)
    ticks, step = nano_ticks(0, hi)
    f.y_axis(y, [(t, money_label(t, step)) for t in ticks])
    f.time_axis(x, start, end)
    for model, prices in series.items():
        for part, which, dash in (("completion", 1, None), ("prompt", 0, "6 4")):
            spans = [None if p is None else (x(s), x(s + HOUR_US), y(p[which]))
                     for s, p in zip(starts, prices, strict=True)]
            f.add(el("path", class_=f"price {part}", data_model=model, d=step_path(spans), fill="none",
                     stroke=colours[model], stroke_width=2.2 if which else 1.6, stroke_dasharray=dash))
    return f.finish()


def replicas_chart(result: SimResult) -> str:
    """Mean routable replicas per hour, stacked by model: the top edge is the whole fleet."""
    colours = model_colours(result)
    by_model = hours_by_model(result)
    starts = hour_starts(result)
    base = [0.0] * len(starts)
    layers = []
    for model in colours:
        points = by_model.get(model, {})
        top = [b + max(points[s].replicas if s in points else 0.0, 0.0) for b, s in zip(base, starts, strict=True)]
        layers.append((model, list(base), top))
        base = top
    peak = max(base, default=0.0)
    f = Frame("Replicas serving, per hour (mean over the hour, stacked by model)",
              legend=[("box", c, m) for m, c in colours.items()],
              subtitle=f"Peak {peak:.1f} replicas; mean {sum(base) / len(base):.1f}" if base else "No hours")
    x, start, end = _x_scale(result, f)
    hi = max(max(base, default=0.0) * 1.1, 1.0)
    y = Scale(0.0, hi, f.y0, f.y1)
    f.y_axis(y, [(v, f"{v:g}") for v in nice_ticks(0.0, hi)])
    f.time_axis(x, start, end)
    for model, low, top in layers:
        if not starts:
            break
        forward = "".join(f"H{x(s):.2f}V{y(t):.2f}H{x(s + HOUR_US):.2f}" for s, t in zip(starts, top, strict=True))
        back = "".join(f"V{y(b):.2f}H{x(s):.2f}" for s, b in zip(reversed(starts), reversed(low), strict=True))
        d = f"M{x(starts[0]):.2f} {y(low[0]):.2f}{forward}{back}Z"
        f.add(el("path", class_="replicas", data_model=model, d=d, fill=colours[model], fill_opacity=0.75,
                 stroke=colours[model], stroke_width=1))
    return f.finish()


CHARTS = {"profit": profit_chart, "utilization": utilization_chart, "price": price_chart,
          "replicas": replicas_chart}


def write_charts(result: SimResult, out_dir: Path) -> list[Path]:
    """Write profit.svg, utilization.svg, price.svg, replicas.svg and report.html into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    svgs = {name: draw(result) for name, draw in CHARTS.items()}
    paths = []
    for name, svg in svgs.items():
        path = out_dir / f"{name}.svg"
        path.write_text(svg, encoding="utf-8")
        paths.append(path)
    page = out_dir / "report.html"
    page.write_text(report_page(result, list(svgs.values())), encoding="utf-8")
    return [page, *paths]
