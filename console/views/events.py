"""Events: the backend's live log, newest last; only events after the last seen one are fetched."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import ComposeResult

from console.views.base import TableView

KEEP = 2000  # rows kept in memory; older ones scroll away


class EventsView(TableView):
    view_name = "events"
    columns = ("#", "time (UTC)", "level", "kind", "subject", "message")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.last_seq = 0

    def compose(self) -> ComposeResult:
        yield self.make_table()

    async def refresh_data(self) -> None:
        events = await self.tm.api.events(self.last_seq)
        if not events:
            return
        self.last_seq = max(e.seq for e in events)
        new = [(str(e.seq), (e.seq, datetime.fromtimestamp(e.ts_us / 1e6, UTC).strftime("%m-%d %H:%M:%S"),
                             e.level.upper(), e.kind, e.subject, e.message)) for e in events]
        at_end = not self.rows or self.table.cursor_row >= self.table.row_count - 1
        self.set_rows((self.rows + new)[-KEEP:])
        if at_end:  # follow the log unless the operator moved up to read something
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)
