"""The console's tables: a DataTable whose cells are plain text and whose rendered cells outlive
an update.

Plain text: names come from clients and hosts ("[/]" is a fine client name), so a cell is never
parsed as markup. DataTable parses every str cell as markup, where such a name would show styled
or stop the console with a MarkupError.

Rendered cells that outlive an update: DataTable keys its cell cache on a counter that every
`update_cell` bumps and drops it on every focus change, so one changed figure in a 1,000-host
table, or switching to the view, re-renders every visible cell through rich's general layout
(~0.5 ms a cell here). Here a cell's rendering is kept as long as the cell object and everything
that styles it are the same, and a one-line plain cell is laid out directly (crop or pad to the
column, then the row's styles), which is what rich's Padding and Styled would produce for it.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable


def plain(value: Any) -> Text:
    """A cell showing `value` as written, on one line (None shows empty)."""
    text = "" if value is None else str(value)
    return Text(" ".join(text.split("\n")).replace("\t", " "), no_wrap=True, end="")


class Table(DataTable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Enough for every visible cell in a few styles (cursor, focus, zebra) on a tall terminal.
        self._kept_cells: LRUCache[tuple, tuple[object, list[list[Segment]]]] = LRUCache(16384)
        self.values: dict[str, tuple[Any, ...]] = {}  # row key -> the values it shows

    def set_row(self, key: str, values: tuple[Any, ...]) -> None:
        """Add the row, or update the cells of it whose value changed."""
        old = self.values.get(key)
        self.values[key] = values
        if old is None:
            self.add_row(*(plain(v) for v in values), key=key)
            return
        for column, new, before in zip(self.columns.values(), values, old, strict=True):
            if new != before:
                text = plain(new)
                # Measuring a cell renders it: only when it may not fit its column.
                self.update_cell(key, column.key, text, update_width=text.cell_len > column.content_width)

    def clear(self, columns: bool = False) -> Table:
        self.values.clear()
        super().clear(columns)
        return self

    def remove_row(self, row_key: Any) -> None:
        super().remove_row(row_key)
        self.values.pop(getattr(row_key, "value", row_key), None)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        if row_index < 0 or column_index < 0:  # the header and row labels: DataTable's own way
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        row = self.rows.get(row_key) if row_key is not None else None
        cell = self._get_row_renderables(row_index).cells[column_index]
        if row is None or row.height != 1 or not isinstance(cell, Text) or cell.justify not in (None, "left"):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, row_index < self.fixed_rows or column_index < self.fixed_columns, hover, cursor,
            self.show_cursor, self._show_hover_cursor, self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        key = (row_key, self._column_locations.get_key(column_index), row_index, width, base_style,
               component_style, post_style, self.cell_padding)
        kept = self._kept_cells.get(key)
        if kept is not None and kept[0] is cell:
            return kept[1]
        # The mouse finds its cell through this meta, as in DataTable.
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        pad = self.cell_padding
        line = Segment.adjust_line_length(list(cell.render(self.app.console)), max(width - 2 * pad, 0))
        if pad:
            line = [Segment(" " * pad), *line, Segment(" " * pad)]
        lines = [list(Segment.apply_style(line, pre_style, post_style))]
        self._kept_cells[key] = (cell, lines)
        return lines
