"""Enter on a row: a read-only detail panel over the view (Esc goes back)."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class DetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > VerticalScroll { width: 100; max-width: 95%; height: auto; max-height: 90%;
                                    border: thick $accent; padding: 0 1; background: $surface; }
    DetailScreen #detail-title { text-style: bold; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Back")]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__()
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._title, id="detail-title", markup=False)
            yield Static(self._body)

    def action_close(self) -> None:
        self.dismiss(None)
