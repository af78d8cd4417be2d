"""Shows a freshly issued secret exactly once. It is not kept anywhere after this screen closes,
and it is never put in a notification (notifications can be logged)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class SecretScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    SecretScreen { align: center middle; }
    SecretScreen > Vertical { width: 76; max-width: 95%; height: auto; border: thick $success; padding: 1 2;
                              background: $surface; }
    SecretScreen #secret { margin: 1 0; text-style: bold; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, secret: str) -> None:
        super().__init__()
        self._title, self._secret = title, secret

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._title, markup=False)
            yield Static(self._secret, id="secret", markup=False)
            yield Static("Copy it now: it is shown once and cannot be shown again. Enter/Esc closes.")

    def action_close(self) -> None:
        self._secret = ""
        self.dismiss(None)
