"""`?`: the keys of the app and of the view on screen, generated from the bindings so it
cannot drift from what the keys do."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 64; max-width: 95%; height: auto; max-height: 90%; border: thick $accent;
                                  padding: 0 2; background: $surface; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        for title, keys in self.sections:
            lines.append(f"[b]{title}[/b]")
            lines += [f"  {key:<10} {what}" for key, what in keys]
            lines.append("")
        with VerticalScroll():
            yield Static("\n".join(lines).rstrip())

    def action_close(self) -> None:
        self.dismiss(None)
