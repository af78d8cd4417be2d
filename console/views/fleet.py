"""Fleet: one row per host; `d` drain, `r` resume, `x` remove (each confirmed)."""

from __future__ import annotations

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from backend.api.admin_wire import HostOut
from console.money import usd
from console.views.base import TableView
from console.widgets.detail import DetailScreen

_QUESTIONS = {
    "drain": "Drain host {name}? It finishes its requests and takes no new ones.",
    "resume": "Resume host {name}? It takes new requests again.",
    "remove": "Remove host {name}? Its token stops working; this cannot be undone.",
}


def _na(value: object, unit: str = "") -> str:
    return "N/A" if value is None else f"{value}{unit}"


def gpu_table(host: HostOut) -> Table:
    """One row per GPU; every field the driver does not report reads N/A."""
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for col in ("GPU", "name", "util", "memory MiB", "temp", "power W"):
        table.add_column(col)
    for g in host.gpus:
        mem = "N/A" if g.memory_used_mib is None else f"{g.memory_used_mib}/{_na(g.memory_total_mib)}"
        limit = "N/A" if g.power_limit_w is None else f"{g.power_limit_w:.0f}"
        power = "N/A" if g.power_draw_w is None else f"{g.power_draw_w:.0f}/{limit}"
        table.add_row(str(g.index), g.name, _na(g.utilization_pct, "%"), mem, _na(g.temperature_c, "°C"), power)
    if not host.gpus:
        table.add_row("N/A", "no GPU telemetry from this host", "", "", "", "")
    return table


def gpu_bar(host: HostOut, width: int = 8) -> str:
    """Mean GPU utilisation as a bar of text (readable without colour), `N/A` when not reported."""
    utils = [g.utilization_pct for g in host.gpus if g.utilization_pct is not None]
    if not utils:
        return "N/A"
    pct = sum(utils) // len(utils)
    filled = (pct * width + 50) // 100
    return f"{len(host.gpus)}x " + "█" * filled + "░" * (width - filled) + f" {pct:>3}%"


class FleetView(TableView):
    view_name = "fleet"
    columns = ("host", "provider", "status", "models", "in-flight", "GPU", "$/h")
    BINDINGS = [Binding("d", "host('drain')", "Drain"), Binding("r", "host('resume')", "Resume"),
                Binding("x", "host('remove')", "Remove")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names: dict[str, str] = {}
        self.hosts: dict[str, HostOut] = {}

    def compose(self) -> ComposeResult:
        yield self.make_table()

    async def refresh_data(self) -> None:
        hosts = await self.tm.api.hosts()
        self.names = {h.id: h.name for h in hosts}
        self.hosts = {h.id: h for h in hosts}
        self.set_rows([(h.id, (h.name, h.provider, h.status, ", ".join(h.models) or "-", h.in_flight, gpu_bar(h),
                               usd(h.cost_per_hour_nano)))
                       for h in sorted(hosts, key=lambda h: h.name)])

    @on(DataTable.RowSelected)
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        host = self.hosts.get(event.row_key.value)
        if host is not None:
            heard = "never" if host.seconds_since_heard is None else f"{host.seconds_since_heard:.1f}s ago"
            title = (f"{host.name} ({host.id})  {host.provider}  {host.status}  GPU type {host.gpu_type or 'N/A'}  "
                     f"agent {host.agent_version or '?'}  heard {heard}")
            self.app.push_screen(DetailScreen(title, gpu_table(host)))

    @work(group="action", exclusive=True)
    async def action_host(self, action: str) -> None:
        host_id = self.selected_key()
        if host_id is None:
            return
        name = self.names.get(host_id, host_id)
        await self.mutate(f"{action} host", _QUESTIONS[action].format(name=name),
                          lambda: self.tm.api.host_action(host_id, action), f"Host {name}: {action} requested.")
