"""One labelled row of per-minute bars: the last hour, with the latest and peak values beside
it as text (so it reads without colour too)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from console.widgets.minute_bars import MinuteBars


class SparkRow(Horizontal):
    DEFAULT_CSS = """
    SparkRow { height: 1; }
    SparkRow .spark-label { width: 15; }
    SparkRow MinuteBars { width: 1fr; min-width: 10; max-width: 60; }
    SparkRow .spark-value { width: 26; padding-left: 1; }
    """

    def __init__(self, label: str, fmt: Callable[[float], str], **kwargs) -> None:
        super().__init__(**kwargs)
        self._label, self._fmt = label, fmt

    def compose(self) -> ComposeResult:
        yield Static(self._label, classes="spark-label", markup=False)
        yield MinuteBars()
        yield Static("", classes="spark-value", markup=False)

    def show(self, values: Sequence[float | None], observed_from: int = 0) -> None:
        """`values`: one per minute, the last one the minute in progress, which is left out (a
        partial minute would always look like a drop). Minutes before `observed_from` passed
        before the backend was observing: no data, not zeros."""
        values = [None if i < observed_from else v for i, v in enumerate(values[:-1])]
        self.query_one(MinuteBars).show(values)
        known = [v for v in values if v is not None]
        text = f"{self._fmt(known[-1])} (max {self._fmt(max(known))})" if known else "N/A"
        self.query_one(".spark-value", Static).update(text)
