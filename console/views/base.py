"""What every view shares: the admin client, a refresh hook the app calls only while the view
is on screen, the confirm-then-mutate path (refused in read-only mode), and, for table views,
the `/` filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.containers import Vertical
from textual.widgets import DataTable

from console.client import AdminError, BackendUnavailable
from console.widgets.confirm import ConfirmScreen
from console.widgets.table import Table

if TYPE_CHECKING:
    from console.app import TokenmillApp

Row = tuple[str, tuple[Any, ...]]  # (row key, cells)


class View(Vertical):
    view_name: ClassVar[str] = ""
    DEFAULT_CSS = "View { height: 1fr; }"
    writes: ClassVar[frozenset[str]] = frozenset()  # actions that change something: hidden when read-only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides the key from the footer too: a read-only console offers no action it refuses.
        return not (action in self.writes and self.tm.readonly)

    @property
    def tm(self) -> TokenmillApp:
        return self.app  # type: ignore[return-value]

    async def refresh_data(self) -> None:
        """Fetch and show fresh data. Called by the app's refresh worker, never concurrently."""

    def set_filter(self, text: str) -> None:
        """Views without a table ignore the `/` filter."""

    def focus_main(self) -> None:
        for table in self.query(DataTable):
            table.focus()
            return
        # No table (overview): focus nothing, so no hidden view's keys show in the footer.
        self.screen.set_focus(None)

    def back(self) -> bool:
        """Esc inside the view (leave a drill-down). True when it did something."""
        return False

    def writable(self, what: str) -> bool:
        if self.tm.readonly:
            self.notify(f"Read-only console: {what} is disabled.", severity="warning")
            return False
        return True

    async def mutate(self, what: str, question: str, call: Callable[[], Awaitable[Any]], done: str) -> Any:
        """Confirm, call the backend, report, refresh. Must run in a worker (it waits for the modal).
        Returns the backend's answer, or None when refused, cancelled or failed."""
        if not self.writable(what):
            return None
        if not await self.app.push_screen_wait(ConfirmScreen(question)):
            return None
        try:
            result = await call()
        except AdminError as exc:
            self.notify(f"{what} failed: {exc.message}", severity="error")
            return None
        except BackendUnavailable:
            self.notify(f"{what} failed: the backend is not answering.", severity="error")
            return None
        self.notify(done)
        self.tm.request_refresh()
        return result


class TableView(View):
    """A view around one main DataTable whose rows the `/` filter narrows. Views that drill down
    (Enter) show the detail of one row in place of the table, refreshed like the table while it
    is on screen; Esc goes back to the table."""

    columns: ClassVar[tuple[str, ...]] = ()
    fixed_columns: ClassVar[int] = 0  # leading columns that stay while the others scroll sideways
    DEFAULT_CSS = """
    TableView .detail { display: none; padding: 0 1; }
    TableView.drilled .detail { display: block; }
    TableView.drilled #table { display: none; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[Row] = []
        self.filter = ""
        self.detail_key: str | None = None  # the row drilled into, None while the table shows

    def make_table(self, id: str = "table") -> Table:
        table = Table(id=id, cursor_type="row", zebra_stripes=True)
        table.fixed_columns = self.fixed_columns
        table.add_columns(*self.columns)
        return table

    async def refresh_data(self) -> None:
        if self.detail_key is None:
            await self.refresh_table()
        else:
            await self.refresh_detail(self.detail_key)

    async def refresh_table(self) -> None:
        """Fetch and show the table's rows."""

    async def refresh_detail(self, key: str) -> None:
        """Fetch and show the detail of one row (views that drill down)."""

    def drill(self, key: str) -> None:
        self.detail_key = key
        self.add_class("drilled")
        # The detail takes focus (it scrolls), so the view's keys act on the row drilled into.
        self.query_one("#detail").focus()
        self.tm.request_refresh()

    def back(self) -> bool:
        if self.detail_key is None:
            return False
        self.detail_key = None
        self.remove_class("drilled")
        self.table.focus()
        self.tm.request_refresh()
        return True

    def focus_main(self) -> None:
        if self.detail_key is None:
            super().focus_main()
        else:
            self.query_one("#detail").focus()

    @property
    def table(self) -> Table:
        return self.query_one("#table", Table)

    def set_rows(self, rows: list[Row]) -> None:
        self.rows = rows
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter = text.strip()
        self.tm.header.filter = self.filter  # an active filter shows on the top line
        self._render_rows()

    def _render_rows(self) -> None:
        fill_table(self.table, [r for r in self.rows if matches(r, self.filter)])

    def selected_key(self) -> str | None:
        return self.detail_key or selected_key(self.table)


def matches(row: Row, text: str) -> bool:
    return not text or text.lower() in " ".join(str(c) for c in row[1]).lower()


def selected_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def fill_table(table: Table, rows: list[Row]) -> None:
    """Show `rows`, keeping the cursor on the same row key so a refresh every 2 s does not yank
    the selection away from the operator. When the same rows come back in the same order (the
    usual refresh), only the cells that changed are touched: rebuilding a table of 1,000 hosts
    every 2 s would cost a fifth of a core and stall key presses behind it."""
    keys = [key for key, _ in rows]
    if keys and keys == [k.value for k in table.rows] and len(rows[0][1]) == len(table.columns):
        for key, cells in rows:
            table.set_row(key, cells)
        return
    current = selected_key(table)
    table.clear()
    index = 0
    for i, (key, cells) in enumerate(rows):
        table.set_row(key, cells)
        if key == current:
            index = i
    if rows:
        table.move_cursor(row=index, animate=False)
    # DataTable sizes its columns on idle; a row drawn before that (the cursor's, at once) stays
    # cached at the header's widths. Drop the render caches once the new widths are in.
    table.call_after_refresh(table.notify_style_update)
