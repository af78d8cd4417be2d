"""The overview's projections: the daily profit target's progress as a bar, today's and this month's
revenue, cost and profit so far -> projected to the end of the period (UTC), and each served
model's break-even utilization on its current hosts beside its utilization now.

Everything is the backend's (GET /admin/projections); this only lays it out. A projection that
rests on little time (the backend or its ledger is young) says so: "tentative". Text and
characters, not colour alone, so it reads the same with NO_COLOR. The break-even table sits beside
the money on a wide terminal and under it on a narrow one."""

from __future__ import annotations

from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from backend.wire.projections import ModelBreakEvenOut, PeriodProjectionOut, ProjectionsOut
from console.figures import NA, share
from console.money import usd

BAR_CELLS = 20
SO_FAR, PROJECTED, EMPTY = "█", "▒", "░"
# Less observed time than this and the projection is a guess: under a quarter of the hour the day
# is projected from, or under one whole day (one daily cycle) for the month.
TENTATIVE_S = {"day": 900.0, "month": 86_400.0}
GAP = 3  # columns between the money and the break-even table when side by side


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h" + (f"{s % 3600 // 60:02d}m" if s % 3600 >= 60 else "")
    return f"{s // 86_400}d"


def tentative(p: PeriodProjectionOut) -> bool:
    return p.observed_s < TENTATIVE_S[p.period]


def period_heading(p: PeriodProjectionOut) -> str:
    """`today, on 1h`: the period and how much time its projection rests on."""
    name = "today" if p.period == "day" else "month"
    return f"{name}, on {duration(p.observed_s)}" + (" (tentative)" if tentative(p) else "")


def arrow(so_far: int, projected: int) -> str:
    return f"{usd(so_far)} → {usd(projected)}"


def money_table(p: ProjectionsOut) -> Table:
    t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    t.add_column("projected (UTC)")
    t.add_column(period_heading(p.day), justify="right")
    t.add_column(period_heading(p.month), justify="right")
    # Cost is everything that leaves: community hosts' payouts, the GPUs' cost, OpenRouter's fees.
    rows = (("revenue", lambda q: arrow(q.revenue_nano, q.projected_revenue_nano)),
            ("cost", lambda q: arrow(q.payouts_nano + q.gpu_cost_nano + q.fees_nano,
                                     q.projected_payouts_nano + q.projected_gpu_cost_nano + q.projected_fees_nano)),
            ("profit", lambda q: arrow(q.profit_nano, q.projected_profit_nano)))
    for label, cell in rows:
        t.add_row(label, cell(p.day), cell(p.month))
    return t


def bar(progress: float, projected: float) -> str:
    """BAR_CELLS cells: so far (█), then up to the projection (▒), then the rest (░); a loss fills nothing."""
    done = round(min(max(progress, 0.0), 1.0) * BAR_CELLS)
    ahead = max(round(min(max(projected, 0.0), 1.0) * BAR_CELLS) - done, 0)
    return SO_FAR * done + PROJECTED * ahead + EMPTY * (BAR_CELLS - done - ahead)


def target_line(p: ProjectionsOut) -> str:
    if p.profit_target_daily_nano <= 0 or p.target_progress is None or p.target_projected is None:
        return "daily profit target: none set (profit_target_daily_usd)"
    return (f"target {usd(p.profit_target_daily_nano)}/day  {bar(p.target_progress, p.target_projected)}  "
            f"{100 * p.target_progress:.0f}% so far, {100 * p.target_projected:.0f}% projected")


def break_even_cell(m: ModelBreakEvenOut) -> str:
    return NA if m.break_even_utilization is None else share(m.break_even_utilization)


def break_even_table(models: list[ModelBreakEvenOut]) -> Table:
    t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    t.add_column("break-even")
    t.add_column("needs", justify="right")
    t.add_column("now", justify="right")
    t.add_column("hosts", justify="right")
    for m in models:
        t.add_row(m.model, break_even_cell(m), share(m.utilization),
                  f"{m.replicas} {usd(m.gpu_cost_per_h_nano)}/h")
    if not models:
        t.add_row("no model served", "", "", "")
    return t


class ProjectionsPanel(Vertical):
    DEFAULT_CSS = """
    ProjectionsPanel { height: auto; }
    ProjectionsPanel #proj-row { height: auto; }
    ProjectionsPanel.narrow #proj-row { layout: vertical; }
    ProjectionsPanel #proj-money { width: auto; margin-right: 3; }
    ProjectionsPanel.narrow #proj-money { margin-right: 0; }
    ProjectionsPanel #proj-break-even { width: auto; }
    """

    _tables: tuple[Table, Table] | None = None  # the last shown, measured again on a resize

    def compose(self) -> ComposeResult:
        yield Static("projections: loading…", id="proj-target", markup=False)
        with Horizontal(id="proj-row"):
            yield Static("", id="proj-money")
            yield Static("", id="proj-break-even")

    def _fits_beside(self, *tables: Table) -> bool:
        """Whether the tables fit side by side in the terminal, as wide as their figures make them
        now (a dollar figure grows a column: a fixed threshold would clip the last one)."""
        console = self.app.console
        need = sum(Measurement.get(console, console.options, t).maximum for t in tables) + GAP
        return need <= self.app.size.width - 2  # the view's padding

    def on_resize(self) -> None:
        if self._tables is not None:
            self.set_class(not self._fits_beside(*self._tables), "narrow")

    def show(self, p: ProjectionsOut | None) -> None:
        """None: the backend has no projections to give (an older one)."""
        if p is None:
            self._tables = None
            self.query_one("#proj-target", Static).update(f"projections: {NA}")
            self.query_one("#proj-money", Static).update("")
            self.query_one("#proj-break-even", Static).update("")
            return
        money, break_even = self._tables = money_table(p), break_even_table(p.models)
        self.set_class(not self._fits_beside(money, break_even), "narrow")
        self.query_one("#proj-target", Static).update(Text(target_line(p)))
        self.query_one("#proj-money", Static).update(money)
        self.query_one("#proj-break-even", Static).update(break_even)
