"""The top line: which backend, and the states an operator must never miss (SIMULATED,
READONLY, DISCONNECTED). Text labels, not colours alone, so it reads the same with NO_COLOR."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class StatusHeader(Widget):
    DEFAULT_CSS = """
    StatusHeader { dock: top; height: 1; background: $panel; color: $text; }
    """
    view: reactive[str] = reactive("overview")
    filter: reactive[str] = reactive("")  # the view's `/` filter, while one is active
    disconnected: reactive[bool] = reactive(False)

    def __init__(self, url: str, *, simulated: bool, readonly: bool) -> None:
        super().__init__()
        self.url, self.simulated, self.readonly = url, simulated, readonly

    def render(self) -> Text:
        text = Text.assemble(("tokenmill", "bold"), " ", (f":{self.view}", "bold"))
        if self.filter:
            text.append(f" /{self.filter}", "bold reverse")
            text.append(" (Esc clears)")
        text.append("  " + self.url)
        if self.simulated:
            text.append("  SIMULATED", "bold yellow")
        if self.readonly:
            text.append("  READONLY", "bold cyan")
        if self.disconnected:
            text.append("  DISCONNECTED", "bold reverse red")
        return text
