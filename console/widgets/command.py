"""The `:` command line: a view name with inline completion (Tab or → accepts it); a unique
prefix is enough on Enter. Esc closes it."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input


class CommandLine(Input):
    DEFAULT_CSS = """
    CommandLine { dock: bottom; display: none; border: none; height: 1; padding: 0 1; }
    CommandLine.-open { display: block; }
    """
    BINDINGS = [Binding("tab", "complete", "Complete", show=False), Binding("escape", "close", "Close", show=False)]

    class Chosen(Message):
        def __init__(self, mode: str, value: str) -> None:
            super().__init__()
            self.mode, self.value = mode, value

    def __init__(self, views: list[str]) -> None:
        super().__init__(id="command")
        self.views = views
        self.mode = ":"
        self._view_suggester = SuggestFromList(views, case_sensitive=False)

    def open(self, mode: str, value: str = "") -> None:
        """mode ':' switches view, '/' filters the table on screen."""
        self.mode = mode
        self.suggester = self._view_suggester if mode == ":" else None
        self.placeholder = "view: " + ", ".join(self.views) if mode == ":" else "filter rows (empty: all)"
        self.value = value
        self.add_class("-open")
        # Focus now, not later (Widget.focus defers to the message queue): keys typed or pasted
        # in one go (":fleet⏎") are already queued behind the ':' and must reach this input.
        self.screen.set_focus(self)

    def resolve(self, text: str) -> str | None:
        text = text.strip().lower()
        matches = [v for v in self.views if v.startswith(text)] if text else []
        return text if text in self.views else (matches[0] if len(matches) == 1 else None)

    def action_complete(self) -> None:
        self.action_cursor_right()  # at the end of the text, this accepts the suggestion

    def action_close(self) -> None:
        self.remove_class("-open")
        self.post_message(self.Chosen(self.mode + "close", ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.remove_class("-open")
        self.post_message(self.Chosen(self.mode, event.value))
