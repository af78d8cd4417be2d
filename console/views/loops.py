"""Loops: the backend's background loops (fleet health, hold expiry, GPU cost meter, calendar
schedules...), as its supervisor runs them (GET /admin/loops), in start order: what drives each,
its state (running, BACKING OFF after a crash, stopped), its last and next run, how often it
crashed and was restarted, and its last error. Enter: the whole loop (the error in full, how many
runs, what it starts after); Esc: back."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table as RichTable
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.admin import LoopOut
from console.figures import NA
from console.views.base import TableView

STATES = {"running": "running", "backing_off": "BACKING OFF", "stopped": "stopped", "registered": "not started"}


def _time(us: int | None) -> str:
    return NA if us is None else datetime.fromtimestamp(us / 1e6, UTC).strftime("%m-%d %H:%M:%S")


def loop_table(loop: LoopOut) -> RichTable:
    t = RichTable(box=None, padding=(0, 2), show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for label, value in (("loop", loop.name), ("kind", loop.kind), ("schedule", loop.every),
                         ("starts after", ", ".join(loop.after) or "-"), ("state", STATES.get(loop.state, loop.state)),
                         ("completed runs", f"{loop.runs:,}"), ("last run (UTC)", _time(loop.last_run_us)),
                         ("next run (UTC)", _time(loop.next_run_us)), ("restarts", f"{loop.restarts:,}"),
                         ("last error", loop.last_error or "-"), ("error at (UTC)", _time(loop.last_error_us))):
        t.add_row(label, value)
    return t


class LoopsView(TableView):
    view_name = "loops"
    columns = ("loop", "kind", "schedule", "state", "last run", "next run", "restarts", "last error")
    fixed_columns = 1

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.loops: dict[str, LoopOut] = {}

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="loop", markup=False)
            yield Static("Esc: back", classes="hint")

    async def refresh_table(self) -> None:
        loops = await self.tm.api.loops()
        self.loops = {loop.name: loop for loop in loops}
        self.set_rows([(loop.name, (loop.name, loop.kind, loop.every, STATES.get(loop.state, loop.state),
                                    _time(loop.last_run_us), _time(loop.next_run_us), loop.restarts,
                                    loop.last_error or ""))
                       for loop in loops])

    async def refresh_detail(self, key: str) -> None:
        loop = next((x for x in await self.tm.api.loops() if x.name == key), None)
        self.query_one("#loop", Static).update(loop_table(loop) if loop else f"{key}: no longer registered")

    @on(DataTable.RowSelected)
    def _show_loop(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.loops:
            self.drill(event.row_key.value)
