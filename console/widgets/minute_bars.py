"""A row of bars, one per minute, readable without colour: rising bars (▁ to █) for values at or
above zero, bars hanging from the top (▔ ▀) for negative ones, and a blank for a minute without
data. Each value is scaled against the largest magnitude shown, so zero is always the bottom and
a loss never draws as a full bar."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

RISING = "▁▂▃▄▅▆▇█"
HANGING = "▔▀"
NO_DATA = " "


def bars(values: Sequence[float | None]) -> Text:
    scale = max((abs(v) for v in values if v is not None), default=0) or 1
    text = Text()
    for v in values:
        if v is None:
            text.append(NO_DATA)
        elif v >= 0:
            text.append(RISING[min(int(v / scale * (len(RISING) - 1) + 0.5), len(RISING) - 1)], "green")
        else:
            text.append(HANGING[min(int(-v / scale * len(HANGING)), len(HANGING) - 1)], "red")
    return text


class MinuteBars(Widget):
    """The newest minutes that fit the width, oldest on the left."""

    DEFAULT_CSS = "MinuteBars { height: 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: list[float | None] = []

    def show(self, values: Sequence[float | None]) -> None:
        self.values = list(values)
        self.refresh()

    def render(self) -> Text:
        width = self.size.width
        return bars(self.values[-width:] if width else [])
