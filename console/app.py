"""The cockpit. k9s grammar: `:` switches view, `/` filters, Enter drills down, Esc goes back,
`?` lists the keys, `q` quits.

Refresh: one worker refreshes the view on screen, and when it finishes a timer re-arms the next
one (Dolphie style). So refreshes never overlap however slow the backend is, a view not on screen
costs nothing, and input is never blocked (the worker awaits the network, not the UI)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Input

from console.client import AdminError, BackendUnavailable
from console.gc_pacer import GcPacer
from console.views import VIEWS, View
from console.widgets.command import CommandBar, CommandLine
from console.widgets.footer import KeysFooter
from console.widgets.header import StatusHeader
from console.widgets.help import HelpScreen

DAY_US = 86_400_000_000


class TokenmillApp(App[None]):
    TITLE = "tokenmill"
    CSS = "ContentSwitcher { height: 1fr; }"
    AUTO_FOCUS = None  # the view on screen decides (a hidden view's table must not keep focus)
    ENABLE_COMMAND_PALETTE = False  # `:` is the command line here, as in k9s
    BINDINGS = [
        Binding("q", "quit", "Quit"),  # first: the footer shows these first (widgets/footer.py)
        # Priority: handled as the key arrives, so ":fleet⏎" typed or pasted in one go reaches the
        # command line whole (a normal binding runs only after the keys queued behind it).
        Binding("colon", "command", "View", key_display=":", priority=True),
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("escape", "back", "Back", show=False),
        Binding("question_mark", "help", "Keys", key_display="?"),
    ]

    def __init__(self, api: Any, *, readonly: bool = False, simulated: bool = False, refresh_s: float = 2.0,
                 clock_us: Callable[[], int] | None = None, initial_view: str = "overview",
                 owns_api: bool = False, gc_pacer: GcPacer | None = None) -> None:
        super().__init__()
        # The console's own process paces full garbage collections (gc_pacer.py); None leaves
        # Python's defaults, as a test process running many apps wants.
        self.gc_pacer = gc_pacer
        self._gc_released = False
        self.api, self.readonly, self.simulated, self.refresh_s = api, readonly, simulated, refresh_s
        # Injected so snapshot tests can freeze "now" (the overview's windows depend on it).
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self.initial_view, self.owns_api = initial_view, owns_api
        self._refreshing = False
        self._again = False
        self._timer: Timer | None = None
        self.refreshes = 0  # completed refresh runs (tests wait on it)
        self.refreshes_started = 0
        self.view_refreshes = 0  # completed refreshes of the view on screen since it was shown

    # ------------------------------------------------------------------ time
    def now_us(self) -> int:
        return self._clock_us()

    def start_of_day_us(self) -> int:
        now = self.now_us()
        return now - now % DAY_US

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusHeader(getattr(self.api, "base_url", "?"), simulated=self.simulated, readonly=self.readonly)
        with ContentSwitcher(initial=self.initial_view):
            for name, view in VIEWS.items():
                yield view(id=name)
        yield CommandBar(CommandLine(list(VIEWS)))
        yield KeysFooter()

    def on_mount(self) -> None:
        # Kept, not queried later: App.query_one searches the active screen, which is a modal
        # while a confirmation is open, and the refresh goes on underneath it.
        self.switcher = self.query_one(ContentSwitcher)
        self.header = self.query_one(StatusHeader)
        self.command_line = self.query_one(CommandLine)
        self.show_view(self.initial_view, now=True)  # nothing to show yet: fetch while the frame paints

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and self.gc_pacer is not None:
            self.gc_pacer.key_pressed()
        await super().on_event(event)

    def _pace_gc(self) -> None:
        """After a refresh has painted: the pacer is installed once the first figures are on screen
        (start-up's collection does not delay them), then a full collection, when due, runs here."""
        pacer = self.gc_pacer
        if pacer is None or self._gc_released or not self.is_running or self._closing:
            return
        if pacer.installed:
            pacer.idle()
        else:
            pacer.install()

    async def on_unmount(self) -> None:
        if self.gc_pacer is not None:
            self._gc_released = True
            self.gc_pacer.uninstall()
        if self.owns_api:
            await self.api.aclose()

    @property
    def view(self) -> View:
        return self.switcher.query_one(f"#{self.switcher.current}", View)

    def show_view(self, name: str, now: bool = False) -> None:
        self.switcher.current = name
        self.view_refreshes = 0
        self.header.view = name
        self.header.filter = getattr(self.view, "filter", "")
        self.view.focus_main()
        # The view shows what it had first, then its fresh data: fetching and diffing a large
        # table before the first paint would delay the answer to the key that switched views.
        if now:
            self.request_refresh()
        else:
            self.call_after_refresh(self.request_refresh)

    # ------------------------------------------------------------------ refresh
    def request_refresh(self) -> None:
        """Refresh the visible view now, or right after the refresh in flight."""
        if self._refreshing:
            self._again = True
            return
        if not self.is_running or self._closing:
            return  # a timer or the last worker firing while the app shuts down
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._refreshing, self._again = True, False
        self.refreshes_started += 1
        self.run_worker(self._refresh(self.view), group="refresh", exit_on_error=False)

    async def _refresh(self, view: View) -> None:
        header = self.header
        try:
            await view.refresh_data()
            header.disconnected = False
        except BackendUnavailable:
            header.disconnected = True
        except AdminError as exc:
            header.disconnected = False
            self.notify(f"{view.view_name}: {exc.message}", severity="error", timeout=4)
        except Exception as exc:  # a bug in a view must not stop the refresh loop; show it, go on
            self.notify(f"{view.view_name}: refresh failed: {type(exc).__name__}: {exc}", severity="error", timeout=6)
        finally:
            self._refreshing = False
            self.refreshes += 1
            if view.id == self.switcher.current:
                self.view_refreshes += 1
            if self.gc_pacer is not None and not self._again:
                self.call_after_refresh(self._pace_gc)
            if self._again:
                self.request_refresh()
            elif self.is_running:
                # A view following a running job (provisioning) refreshes faster so its output flows.
                delay = min(self.refresh_s, 0.5) if getattr(view, "busy", False) else self.refresh_s
                self._timer = self.set_timer(delay, self.request_refresh)

    # ------------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("command", "filter"):
            # Not over a dialog, and not while typing: there ':' and '/' are just characters.
            return self.screen is self.screen_stack[0] and not isinstance(self.focused, Input)
        return True

    def action_command(self) -> None:
        self.command_line.open(":")

    def action_filter(self) -> None:
        self.command_line.open("/", getattr(self.view, "filter", ""))

    def action_back(self) -> None:
        if self.view.back():
            return
        if getattr(self.view, "filter", ""):
            self.view.set_filter("")

    def action_help(self) -> None:
        app_keys = [(b.key_display or b.key, b.description) for b in self._bindings_of(self)]
        app_keys += [("Enter", "drill down"), ("Esc", "back / clear filter")]
        view_keys = [(b.key_display or b.key, b.description) for b in self._bindings_of(self.view)]
        views = [(f":{name}", f"{name} view") for name in VIEWS]
        note = " (read-only: disabled)" if self.readonly else ""
        self.push_screen(HelpScreen([("Everywhere", app_keys), (f"This view{note}", view_keys), ("Views", views)]))

    @staticmethod
    def _bindings_of(node: Any) -> list[Binding]:
        return [b for b in node.BINDINGS if isinstance(b, Binding) and b.show]

    @on(CommandLine.Chosen)
    def _command(self, event: CommandLine.Chosen) -> None:
        line = self.command_line
        if event.mode == ":":
            name = line.resolve(event.value)
            if name is None:
                if event.value.strip():
                    self.notify(f"No view {event.value.strip()!r}: {', '.join(VIEWS)}", severity="warning")
                self.view.focus_main()
            else:
                self.show_view(name)
        elif event.mode == "/":
            self.view.set_filter(event.value)
            self.view.focus_main()
        else:  # closed with Esc
            self.view.focus_main()
