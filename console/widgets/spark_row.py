"""One labelled sparkline: the last hour, one bar per minute, with the latest and peak values
beside it as text (so it reads without colour too)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class SparkRow(Horizontal):
    DEFAULT_CSS = """
    SparkRow { height: 1; }
    SparkRow .spark-label { width: 13; }
    SparkRow Sparkline { width: 1fr; min-width: 10; }
    SparkRow .spark-value { width: 26; padding-left: 1; }
    """

    def __init__(self, label: str, fmt: Callable[[float], str], **kwargs) -> None:
        super().__init__(**kwargs)
        self._label, self._fmt = label, fmt

    def compose(self) -> ComposeResult:
        yield Static(self._label, classes="spark-label", markup=False)
        yield Sparkline([0.0])
        yield Static("", classes="spark-value", markup=False)

    def show(self, values: Sequence[float | None]) -> None:
        """`values`: one per minute, the last one the minute in progress, which is left out (a
        partial minute would always look like a drop)."""
        values = values[:-1]
        data = [float(v) if v is not None else 0.0 for v in values] or [0.0]
        self.query_one(Sparkline).data = data
        last = next((v for v in reversed(values) if v is not None), None)
        if last is None:
            text = "N/A"
        else:
            peak = max(v for v in values if v is not None)
            text = f"{self._fmt(last)} (max {self._fmt(peak)})"
        self.query_one(".spark-value", Static).update(text)
