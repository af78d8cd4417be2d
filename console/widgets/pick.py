"""A modal list to choose one item (e.g. which key to revoke); dismisses the option id or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class PickScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    PickScreen > Vertical { width: 70; max-width: 95%; height: auto; max-height: 80%; border: thick $accent;
                            padding: 1 2; background: $surface; }
    PickScreen OptionList { height: auto; max-height: 12; }
    """
    AUTO_FOCUS = "Input, OptionList"  # the app sets AUTO_FOCUS = None; a modal focuses its field
    BINDINGS = [Binding("escape,q", "cancel", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]]) -> None:
        super().__init__()
        self._title, self._options = title, options

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._title, markup=False)
            yield OptionList(*[Option(label, id=key) for key, label in self._options])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
