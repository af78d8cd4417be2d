"""The `:` command line: a view name with inline completion (Tab or → accepts it); a unique
prefix is enough on Enter. Esc closes it. The same line takes the `/` filter. Its row, above the
footer, shows the mode (`:` or `/`) before what is typed, as k9s does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static


class CommandLine(Input):
    # Compact: Input's own `:focus` rule brings back its 3-row border, which in one row left only
    # the border on screen and hid what was typed (Textual 8.2.8); compact beats it (!important).
    # Not docked: docked at the bottom it lay under the footer. It takes the row above the footer.
    DEFAULT_CSS = """
    CommandLine { display: none; width: 1fr; }
    CommandLine.-open { display: block; }
    """
    BINDINGS = [Binding("tab", "complete", "Complete", show=False), Binding("escape", "close", "Close", show=False)]

    class Chosen(Message):
        def __init__(self, mode: str, value: str) -> None:
            super().__init__()
            self.mode, self.value = mode, value

    def __init__(self, views: list[str]) -> None:
        super().__init__(id="command", compact=True)
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
        if isinstance(self.parent, CommandBar):
            self.parent.opened(mode)
        # Focus now, not later (Widget.focus defers to the message queue): keys typed or pasted
        # in one go (":fleet⏎") are already queued behind the ':' and must reach this input.
        self.screen.set_focus(self)

    def resolve(self, text: str) -> str | None:
        text = text.strip().lower()
        matches = [v for v in self.views if v.startswith(text)] if text else []
        return text if text in self.views else (matches[0] if len(matches) == 1 else None)

    def action_complete(self) -> None:
        self.action_cursor_right()  # at the end of the text, this accepts the suggestion

    def _hide(self) -> None:
        self.remove_class("-open")
        if isinstance(self.parent, CommandBar):
            self.parent.remove_class("-open")

    def action_close(self) -> None:
        self._hide()
        self.post_message(self.Chosen(self.mode + "close", ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._hide()
        self.post_message(self.Chosen(self.mode, event.value))


class CommandBar(Horizontal):
    """The command line's row: the mode, then the line itself; shown only while it is open."""

    DEFAULT_CSS = """
    CommandBar { height: 1; display: none; background: $surface; }
    CommandBar.-open { display: block; }
    CommandBar > #command-mode { width: 2; padding-left: 1; text-style: bold; }
    """

    def __init__(self, line: CommandLine) -> None:
        super().__init__()
        self.line = line

    def compose(self) -> ComposeResult:
        yield Static(":", id="command-mode", markup=False)
        yield self.line

    def opened(self, mode: str) -> None:
        self.query_one("#command-mode", Static).update(mode)
        self.add_class("-open")
