"""Small hand-written SVG helpers for the simulation's charts: scales, nice ticks, time ticks, elements.

Money axes tick at whole nano-USD values (1, 2 or 5 times a power of ten), so a label is exact text
from an integer; only pixel positions are floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from backend.money import NANO_PER_USD, format_usd
from backend.runtime.clock import from_us

HOUR_US = 3_600_000_000
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK, MUTED, GRID, AXIS = "#1f2328", "#656d76", "#e7e9ec", "#8c959f"


@dataclass(frozen=True, slots=True)
class Scale:
    """Linear map from a domain [d0, d1] onto pixels [r0, r1] (r1 < r0 for a y axis: up is smaller)."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        if self.d1 == self.d0:
            return (self.r0 + self.r1) / 2
        return self.r0 + (v - self.d0) * (self.r1 - self.r0) / (self.d1 - self.d0)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round values inside [lo, hi] (for shares, replicas)."""
    if hi <= lo:
        return [lo]
    step = _nice_step((hi - lo) / n)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def nano_step(span: int, n: int = 5) -> int:
    """A round step in nano-USD (1, 2 or 5 x 10^k) giving about n ticks over `span`."""
    raw = max(-(-span // n), 1)
    mag = 10 ** (len(str(raw)) - 1)
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def nano_ticks(lo: int, hi: int, n: int = 6) -> tuple[list[int], int]:
    """Round nano-USD values inside [lo, hi], and their step."""
    if hi <= lo:
        return [lo], 1
    step = nano_step(hi - lo, n)
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step)), step


def money_label(nano: int, step: int) -> str:
    """A tick's label, with as many decimals as the step needs: "$1,500", "$0.25", "-$0.005"."""
    places = 0
    while places < 9 and step % (NANO_PER_USD // 10 ** places):
        places += 1
    if 0 < places < 2:
        places = 2  # "$0.50", not "$0.5"
    return format_usd(nano, places=places)


def time_ticks(start_us: int, end_us: int, max_ticks: int = 10) -> list[tuple[int, str, bool]]:
    """(time, label, is a day boundary) at round UTC hours or days, at most about max_ticks of them."""
    hours = max((end_us - start_us) / HOUR_US, 1)
    step_h = next((s for s in (1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 672) if hours / s <= max_ticks), 1344)
    step_us = step_h * HOUR_US
    # Whole days from the run's first midnight (a week from the start when ticks are weeks); hours on the clock.
    if step_h >= 24:
        day0 = from_us(start_us).replace(hour=0, minute=0, second=0, microsecond=0)
        anchor = int(day0.timestamp()) * 1_000_000
        if anchor < start_us:
            anchor += 24 * HOUR_US
    else:
        anchor = -(-start_us // step_us) * step_us
    out = []
    t = anchor
    while t <= end_us:
        when = from_us(t)
        midnight = when.hour == 0
        label = when.strftime("%b %d") if step_h >= 24 or midnight else when.strftime("%H:%M")
        out.append((t, label, midnight))
        t += step_us
    return out


def date_label(at_us: int) -> str:
    return from_us(at_us).strftime("%Y-%m-%d %H:%M UTC")


def attrs(**kv: object) -> str:
    """Attributes in order; a trailing underscore is dropped (class_), underscores become dashes."""
    parts = []
    for k, v in kv.items():
        if v is None:
            continue
        name = k.rstrip("_").replace("_", "-")
        if isinstance(v, float):
            v = f"{v:.2f}".rstrip("0").rstrip(".")
        parts.append(f"{name}={quoteattr(str(v))}")
    return " ".join(parts)


def el(tag: str, body: str = "", **kv: object) -> str:
    a = attrs(**kv)
    return f"<{tag} {a}>{body}</{tag}>" if body else f"<{tag} {a}/>"


def text(x: float, y: float, s: str, **kv: object) -> str:
    kv.setdefault("fill", INK)
    kv.setdefault("font_size", 12)
    return el("text", escape(s), x=x, y=y, **kv)


def tooltip(s: str) -> str:
    """A native hover text (no script): an SVG <title> child."""
    return f"<title>{escape(s)}</title>"


def fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def polyline_path(points: Iterable[tuple[float, float] | None]) -> str:
    """A path through the points; None breaks the line (an hour without data)."""
    d, pen = [], False
    for p in points:
        if p is None:
            pen = False
            continue
        d.append(f"{'L' if pen else 'M'}{fmt(p[0])} {fmt(p[1])}")
        pen = True
    return "".join(d)


def step_path(spans: Sequence[tuple[float, float, float] | None]) -> str:
    """A step line through (x0, x1, y) spans: flat over each span, a vertical at each change; None breaks it."""
    d, last = [], None
    for s in spans:
        if s is None:
            last = None
            continue
        x0, x1, y = s
        if last is not None and abs(last[0] - x0) < 0.01:
            d.append(f"V{fmt(y)}H{fmt(x1)}")
        else:
            d.append(f"M{fmt(x0)} {fmt(y)}H{fmt(x1)}")
        last = (x1, y)
    return "".join(d)


LegendItem = tuple[str, str, str]  # (kind: box, line, dash, up, down, dot; colour; label)
SUBTITLE_CHAR_PX, LEGEND_CHAR_PX = 6.2, 6.9  # mean advance of the sans-serif at 11 and 12 px


@dataclass
class Frame:
    """One chart's canvas: a header (title, subtitle, legend: each wrapped onto as many rows as it
    needs), then the plot rectangle inside the margins. The header is laid out first, so that the
    plot's top, and every scale made from it, is known before anything is drawn."""

    title: str
    subtitle: str = ""
    legend: Sequence[LegendItem] = ()
    width: int = 960
    plot_height: int = 232
    left: int = 76
    right: int = 28
    bottom: int = 52
    extra_top: int = 0  # room between the legend and the plot (the utilization chart's markers)
    parts: list[str] = field(default_factory=list)
    top: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        x_left = 16.0
        y = 24.0
        head = [text(x_left, y, self.title, font_size=15, font_weight="600")]
        for line in _wrap(self.subtitle, int((self.width - 2 * x_left) / SUBTITLE_CHAR_PX)):
            y += 16
            head.append(text(x_left, y, line, fill=MUTED, font_size=11))
        y += 20
        x = x_left
        for kind, colour, label in self.legend:
            w = 22 + LEGEND_CHAR_PX * len(label) + 16
            if x > x_left and x + w > self.width - self.right:
                x, y = x_left, y + 18
            head += [swatch(kind, colour, x, y), text(x + 22, y + 4, label, fill=MUTED, font_size=12)]
            x += w
        self.top = int(y + 16 + self.extra_top) if self.legend else int(y - 4 + self.extra_top)
        self.height = self.top + self.plot_height + self.bottom
        self.parts = head

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:  # the plot's bottom
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:  # the plot's top
        return float(self.top)

    def add(self, *parts: str) -> None:
        self.parts.extend(parts)

    def time_axis(self, x: Scale, start_us: int, end_us: int) -> None:
        """Ticks at round UTC hours/days, a grid line at each, and the first and last dates in full."""
        max_ticks = max(int((self.x1 - self.x0) / 80), 2)
        for t, label, midnight in time_ticks(start_us, end_us, max_ticks):
            px = x(t)
            self.add(el("line", x1=px, x2=px, y1=self.y1, y2=self.y0, stroke=GRID if not midnight else "#d0d4d9",
                        stroke_width=1),
                     el("line", x1=px, x2=px, y1=self.y0, y2=self.y0 + 5, stroke=AXIS),
                     text(px, self.y0 + 18, label, text_anchor="middle", fill=MUTED, font_size=11))
        self.add(text(self.x0, self.height - 10, date_label(start_us), fill=MUTED, font_size=11),
                 text(self.x1, self.height - 10, date_label(end_us), text_anchor="end", fill=MUTED, font_size=11),
                 el("line", x1=self.x0, x2=self.x1, y1=self.y0, y2=self.y0, stroke=AXIS))

    def y_axis(self, y: Scale, ticks: Sequence[tuple[float, str]], *, side: str = "left", colour: str = MUTED,
               grid: bool = True) -> None:
        for v, label in ticks:
            py = y(v)
            if grid:
                self.add(el("line", x1=self.x0, x2=self.x1, y1=py, y2=py, stroke=GRID))
            if side == "left":
                self.add(text(self.x0 - 8, py + 4, label, text_anchor="end", fill=colour, font_size=11))
            else:
                self.add(text(self.x1 + 8, py + 4, label, fill=colour, font_size=11))

    def finish(self) -> str:
        body = "\n".join(self.parts)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" font-family="{FONT}" role="img">\n'
                f"{tooltip(self.title)}\n"
                f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>\n{body}\n</svg>\n')


def _wrap(s: str, chars: int) -> list[str]:
    lines: list[str] = []
    for word in s.split(" ") if s else []:
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def swatch(kind: str, colour: str, x: float, y: float) -> str:
    if kind == "box":
        return el("rect", x=x, y=y - 5, width=16, height=10, rx=2, fill=colour)
    if kind in ("line", "dash"):
        return el("line", x1=x, x2=x + 18, y1=y, y2=y, stroke=colour, stroke_width=2.5,
                  stroke_dasharray="5 3" if kind == "dash" else None)
    if kind in ("up", "down"):
        return marker(kind, colour, x + 8, y)
    return el("circle", cx=x + 8, cy=y, r=4, fill=colour)


def marker(kind: str, colour: str, x: float, y: float, body: str = "", **kv: object) -> str:
    """A triangle pointing up (more replicas) or down (fewer), else a diamond."""
    if kind == "up":
        pts = f"{fmt(x)},{fmt(y - 5)} {fmt(x + 5)},{fmt(y + 4)} {fmt(x - 5)},{fmt(y + 4)}"
    elif kind == "down":
        pts = f"{fmt(x)},{fmt(y + 5)} {fmt(x + 5)},{fmt(y - 4)} {fmt(x - 5)},{fmt(y - 4)}"
    else:
        pts = f"{fmt(x)},{fmt(y - 5)} {fmt(x + 5)},{fmt(y)} {fmt(x)},{fmt(y + 5)} {fmt(x - 5)},{fmt(y)}"
    return el("polygon", body, points=pts, fill=colour, stroke="#ffffff", stroke_width=1, **kv)
