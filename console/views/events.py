"""Events: the backend's live log, newest last; only events after the last seen one are fetched.
Enter shows the whole event (a long message is cut in the table); Esc goes back."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table as RichTable
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.admin import EventOut
from console.views.base import TableView

KEEP = 2000  # rows kept in memory; older ones scroll away


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

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="event", markup=False)
            yield Static("Esc: back", classes="hint")

    async def refresh_table(self) -> None:
        events = await self.tm.api.events(self.last_seq)
        if not events:
            return
        self.last_seq = max(e.seq for e in events)
        self.events.update((str(e.seq), e) for e in events)
        new = [(str(e.seq), (e.seq, datetime.fromtimestamp(e.ts_us / 1e6, UTC).strftime("%m-%d %H:%M:%S"),
                             e.level.upper(), e.kind, e.subject, e.message)) for e in events]
        at_end = not self.rows or self.table.cursor_row >= self.table.row_count - 1
        self.set_rows((self.rows + new)[-KEEP:])
        for key in list(self.events)[: max(len(self.events) - KEEP, 0)]:
            del self.events[key]
        if at_end:  # follow the log unless the operator moved up to read something
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)

    async def refresh_detail(self, key: str) -> None:
        event = self.events.get(key)
        self.query_one("#event", Static).update(event_table(event) if event else f"event #{key}: no longer kept")

    @on(DataTable.RowSelected)
    def _show_event(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.events:
            self.drill(event.row_key.value)
