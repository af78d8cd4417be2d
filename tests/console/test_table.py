"""The console's Table: cells are shown as written (never as markup), a changed cell shows its new
value at once although rendered cells are kept across updates, and its own cell layout draws
exactly what DataTable's general one draws."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from console.widgets.table import Table

COLUMNS = ("name", "status", "figure")
ROWS = [
    ("r1", ("[/]", "active", "$1.25")),  # markup that would not even parse
    ("r2", ("[red]rig[/red]", "draining", "N/A")),
    ("r3", ("a-name-much-longer-than-its-column-is-wide", "down", "€ 3 ∞")),
    ("r4", ("multi\nline\ttab", "", None)),
]


class Both(App):
    """A Table and a DataTable side by side with the same columns and widths."""

    def compose(self) -> ComposeResult:
        yield Table(id="ours", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="theirs", cursor_type="row", zebra_stripes=True)


def lines(table: DataTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.size.height)]


def styled(table: DataTable) -> list[list[tuple[str, str]]]:
    return [[(s.text, str(s.style)) for s in table.render_line(y)] for y in range(table.size.height)]


async def test_cells_show_as_written_and_follow_updates():
    app = Both()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one("#ours", Table)
        table.add_column("name", width=14)
        table.add_columns(*COLUMNS[1:])
        for key, values in ROWS:
            table.set_row(key, values)
        await pilot.pause()
        shown = "\n".join(lines(table))
        assert "[/]" in shown and "[red]rig[/red]" in shown
        assert "multi line tab" in shown  # one line: a newline or tab would break the row apart
        assert "a-name-much-lo" in shown and "a-name-much-lon" not in shown  # cut to its column
        before = lines(table)

        table.set_row("r2", ("[red]rig[/red]", "drained", "N/A"))  # one cell changes
        await pilot.pause()
        after = lines(table)
        assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [2]
        assert "drained" in after[2]
        assert table.values["r2"][1] == "drained"

        table.move_cursor(row=1)  # the cursor's style moves: the kept renderings must follow it
        await pilot.pause()
        assert styled(table)[2] != styled(table)[3]


@pytest.mark.parametrize("width", [6, 9, 30])
async def test_draws_what_datatable_draws(width):
    """Plain cells through our layout and through DataTable's (Padding, Styled, render_lines):
    the same characters in the same styles, focused or not, cursor row or not."""
    app = Both()
    async with app.run_test(size=(80, 12)) as pilot:
        ours, theirs = app.query_one("#ours", Table), app.query_one("#theirs", DataTable)
        for table in (ours, theirs):
            for name in COLUMNS:
                table.add_column(name, width=width)
        for key, values in ROWS[:3]:
            ours.set_row(key, values)
            theirs.add_row(*(ours.get_row(key)), key=key)  # the same Text cells
        ours.move_cursor(row=1)
        theirs.move_cursor(row=1)
        seen = {}
        for focused, other in ((ours, theirs), (theirs, ours)):
            focused.focus()
            await pilot.pause()
            seen[focused.id, "focused"], seen[other.id, "blurred"] = styled(focused), styled(other)
        for state in ("focused", "blurred"):
            assert seen["ours", state] == seen["theirs", state]
        assert seen["ours", "focused"] != seen["ours", "blurred"]  # the comparison sees styles
