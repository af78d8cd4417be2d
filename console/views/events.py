"""Events: the backend's live log, newest last. The first refresh fetches the kept events; then the
view follows the backend's live stream (GET /admin/events/stream) instead of polling. When the
stream breaks (the backend stopped or restarted) the app's refresh fetches what came since the last
event seen, which shows DISCONNECTED while the backend does not answer, and follows the stream
again once it does. Enter shows the whole event (a long message is cut in the table); Esc goes back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich.table import Table as RichTable
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static
from textual.worker import Worker

from backend.wire.admin import EventOut, EventsMissed
from console.client import AdminError, BackendUnavailable
from console.views.base import TableView

KEEP = 2000  # rows kept in memory; older ones scroll away
# A stream that ended sooner than this (the backend shutting down) is not reopened at once, but at
# the app's next timed refresh.
MIN_STREAM_S = 1.0


def _time(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def event_table(e: EventOut) -> RichTable:
    t = RichTable(box=None, padding=(0, 2), show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for label, value in (("event", f"#{e.seq}"), ("time (UTC)", _time(e.ts_us)), ("level", e.level.upper()),
                         ("kind", e.kind), ("subject", e.subject), ("message", e.message)):
        t.add_row(label, value)
    return t


class EventsView(TableView):
    view_name = "events"
    columns = ("#", "time (UTC)", "level", "kind", "subject", "message")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.last_seq = 0
        self.events: dict[str, EventOut] = {}
        self.live = False  # following the backend's stream: refreshes fetch nothing
        self.missed = 0  # events the backend dropped for this console (it fell behind)
        self._follower: Worker | None = None
        # A restarted backend numbers its events from 1 again: rows of each run of the backend are
        # keyed apart, and the events fetched from a new run start after 0.
        self.backend_started_us: int | None = None
        self.run = 0

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="event", markup=False)
            yield Static("Esc: back", classes="hint")

    async def refresh_table(self) -> None:
        if self.live:
            return
        started = (await self.tm.api.status()).started_us
        if started != self.backend_started_us:
            if self.backend_started_us is not None:
                self.run, self.last_seq = self.run + 1, 0
            self.backend_started_us = started
        self.add_events(await self.tm.api.events(self.last_seq))
        if self._follower is None or self._follower.is_finished:
            self._follower = self.run_worker(self._follow(), group="events-stream", exit_on_error=False)

    async def _follow(self) -> None:
        """Follow the live stream from the last event seen. When it ends (the backend ends a stream
        after a while, or stopped) the app's refresh checks whether the backend restarted, fetches
        what was missed, and follows again; at once, unless the stream ended as soon as it began."""
        loop = asyncio.get_running_loop()
        quick = False
        try:
            self.live, began = True, loop.time()
            async for item in self.tm.api.event_stream(self.last_seq):
                if isinstance(item, EventsMissed):
                    self.missed += item.missed
                    self.notify(f"{item.missed} events missed: the console fell behind the backend.",
                                severity="warning", timeout=4)
                else:
                    self.add_events([item])
            quick = loop.time() - began < MIN_STREAM_S
        except (BackendUnavailable, AdminError):
            pass  # the refresh shows DISCONNECTED (or the error) now, not at the next timed refresh
        finally:
            self.live = False
        if not quick and self.is_attached:
            self.tm.request_refresh()

    def add_events(self, events: list[EventOut]) -> None:
        events = [e for e in events if e.seq > self.last_seq]
        if not events:
            return
        self.last_seq = max(e.seq for e in events)
        self.events.update((self._key(e), e) for e in events)
        new = [(self._key(e), (e.seq, datetime.fromtimestamp(e.ts_us / 1e6, UTC).strftime("%m-%d %H:%M:%S"),
                             e.level.upper(), e.kind, e.subject, e.message)) for e in events]
        at_end = not self.rows or self.table.cursor_row >= self.table.row_count - 1
        self.set_rows((self.rows + new)[-KEEP:])
        for key in list(self.events)[: max(len(self.events) - KEEP, 0)]:
            del self.events[key]
        if at_end:  # follow the log unless the operator moved up to read something
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)

    def _key(self, e: EventOut) -> str:
        return f"{self.run}.{e.seq}"

    async def refresh_detail(self, key: str) -> None:
        event = self.events.get(key)
        seq = key.partition(".")[2]
        self.query_one("#event", Static).update(event_table(event) if event else f"event #{seq}: no longer kept")

    @on(DataTable.RowSelected)
    def _show_event(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.events:
            self.drill(event.row_key.value)
