"""A modal that asks for one value and validates it before closing (dismisses None on Esc)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 60; max-width: 90%; height: auto; border: thick $accent; padding: 1 2;
                              background: $surface; }
    PromptScreen #error { color: $error; height: auto; }
    """
    AUTO_FOCUS = "Input, OptionList"  # the app sets AUTO_FOCUS = None; a modal focuses its field
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, validate: Callable[[str], str], placeholder: str = "") -> None:
        super().__init__()
        self.question, self.validate, self.placeholder = question, validate, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            yield Input(placeholder=self.placeholder, id="value")
            yield Static("", id="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = self.validate(event.value)
        except ValueError as exc:
            self.query_one("#error", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
