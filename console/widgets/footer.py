"""The footer, with the keys that work everywhere first: on a narrow terminal the row is cut on
the right, and what gets cut must be a view's extra action (listed by `?`), never `q`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer


class KeysFooter(Footer):
    def compose(self) -> ComposeResult:
        app_actions = [b.action for b in self.app.BINDINGS if isinstance(b, Binding)]

        def order(key) -> int:
            action = getattr(key, "action", None)
            return app_actions.index(action) if action in app_actions else len(app_actions)

        # No binding here uses groups, so every child is a FooterKey; sorted() keeps the views' order.
        yield from sorted(super().compose(), key=order)
