"""Fleet: one row per host with its GPUs' utilisation, memory, temperature and power (N/A where
the host does not report them), its cost and what it brought in today; `d` drain, `r` resume,
`x` remove (each confirmed). Enter: the host's detail (with what it is owed, its next and last
payout) and every GPU, live; Esc: back."""

from __future__ import annotations

import datetime as dt

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.admin import HostOut, UsageOut
from backend.wire.payouts import HostPayoutOut
from console.client import AdminError
from console.money import usd
from console.views.base import TableView
from console.widgets.table import plain

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
        table.add_row(str(g.index), plain(g.name), _na(g.utilization_pct, "%"), mem, _na(g.temperature_c, "°C"), power)
    if not host.gpus:
        table.add_row("N/A", "no GPU telemetry from this host", "", "", "", "")
    return table


def _utc(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def payout_line(p: HostPayoutOut | None) -> str:
    """Owed, next and last payout, and where payouts go: one line of the host's detail."""
    if p is None:
        return "payouts: N/A"
    to = {"stripe": f"Stripe {p.stripe_account}", "manual": "manual"}.get(p.method, "no destination")
    last = "never" if p.last_paid is None or p.last_paid.paid_us is None else \
        f"{p.last_paid.amount_usd} on {_utc(p.last_paid.paid_us)}"
    default = " (default)" if p.threshold_is_default else ""
    return (f"payouts: owed {p.owed_usd}   to {to}, threshold {p.threshold_usd}{default}   last paid {last}\n"
            f"next payout: {p.next}")


def models_cell(models: list[str], width: int = 18) -> str:
    """The models a host serves, cut to fit a column; the detail (Enter) lists them all."""
    text = ", ".join(models) or "-"
    if len(text) <= width:
        return text
    more = f" +{len(models) - 1}" if len(models) > 1 else ""
    return models[0][: width - len(more) - 1] + "…" + more


def _bar(pct: int, width: int) -> str:
    filled = (pct * width + 50) // 100
    return "█" * filled + "░" * (width - filled)


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def gpu_bar(host: HostOut, width: int = 3) -> str:
    """Mean GPU utilisation as a bar of text (readable without colour), `N/A` when not reported."""
    pct = _mean([g.utilization_pct for g in host.gpus])
    if pct is None:
        return "N/A"
    return f"{len(host.gpus)}x {_bar(int(pct), width)} {int(pct):>3}%"


def mem_bar(host: HostOut, width: int = 3) -> str:
    used = [g.memory_used_mib for g in host.gpus]
    total = [g.memory_total_mib for g in host.gpus]
    if not host.gpus or None in used or None in total or not sum(total):
        return "N/A"
    pct = 100 * sum(used) // sum(total)
    return f"{_bar(pct, width)} {pct:>3}%"


def temp(host: HostOut) -> str:
    hottest = [g.temperature_c for g in host.gpus if g.temperature_c is not None]
    return f"{max(hottest)}°C" if hottest else "N/A"


def power(host: HostOut) -> str:
    draw = [g.power_draw_w for g in host.gpus]
    if not host.gpus or None in draw:
        return "N/A"
    limit = [g.power_limit_w for g in host.gpus]
    total = f"{sum(draw):.0f}"
    return f"{total}/{sum(limit):.0f}W" if None not in limit else f"{total}W"


class FleetView(TableView):
    view_name = "fleet"
    columns = ("host", "provider", "status", "models", "in-fl", "GPU util", "memory", "temp", "power", "$/h",
               "earned today")
    BINDINGS = [Binding("d", "host('drain')", "Drain"), Binding("r", "host('resume')", "Resume"),
                Binding("x", "host('remove')", "Remove")]
    writes = frozenset({"host"})
    fixed_columns = 1  # the host's name stays while the other columns scroll sideways

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names: dict[str, str] = {}
        self.hosts: dict[str, HostOut] = {}

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="detail-title", markup=False)
            yield Static("", id="detail-gpus")

    async def _earned_today(self) -> dict[str | None, UsageOut]:
        return {u.group: u for u in await self.tm.api.usage("host", self.tm.start_of_day_us(), None)}

    async def refresh_table(self) -> None:
        hosts = await self.tm.api.hosts()
        earned = await self._earned_today()
        self.names = {h.id: h.name for h in hosts}
        self.hosts = {h.id: h for h in hosts}
        self.set_rows([(h.id, (h.name, h.provider, h.status, models_cell(h.models), h.in_flight, gpu_bar(h),
                               mem_bar(h), temp(h), power(h), usd(h.cost_per_hour_nano),
                               usd(earned[h.id].charged_nano) if h.id in earned else usd(0)))
                       for h in sorted(hosts, key=lambda h: h.name)])

    async def refresh_detail(self, key: str) -> None:
        host = next((h for h in await self.tm.api.hosts() if h.id == key), None)
        if host is None:
            self.query_one("#detail-title", Static).update(f"{key}: no such host any more (Esc: back)")
            return
        self.hosts[host.id] = host
        u = (await self._earned_today()).get(host.id) or UsageOut(host.id, 0, 0, 0, 0, 0, 0)
        heard = "never" if host.last_heard_us is None else f"{(self.tm.now_us() - host.last_heard_us) / 1e6:.0f}s ago"
        share = f"{host.payout_share_bps / 100:g}% of each request" if host.payout_share_bps else "none"
        self.query_one("#detail-title", Static).update(
            f"{host.name} ({host.id})  {host.provider}  {host.status}  GPU type {host.gpu_type or 'N/A'}  "
            f"agent {host.agent_version or '?'}  heard {heard}  (Esc: back)\n"
            f"models: {', '.join(host.models) or '-'}   in flight {host.in_flight}   "
            f"cost {usd(host.cost_per_hour_nano)}/h   payout share {share}\n"
            f"today: {u.requests:,} requests, {u.failed:,} failed, brought in {usd(u.charged_nano)}, "
            f"owed to the host {usd(u.host_share_nano)}\n{payout_line(await self._payout(host.id))}")
        self.query_one("#detail-gpus", Static).update(gpu_table(host))

    async def _payout(self, host_id: str) -> HostPayoutOut | None:
        try:
            return await self.tm.api.host_payout(host_id)
        except AdminError:  # a backend without payouts, or the host just went: the rest still shows
            return None

    @on(DataTable.RowSelected)
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.hosts:
            self.drill(event.row_key.value)

    @work(group="action", exclusive=True)
    async def action_host(self, action: str) -> None:
        host_id = self.selected_key()
        if host_id is None:
            return
        name = self.names.get(host_id, host_id)
        await self.mutate(f"{action} host", _QUESTIONS[action].format(name=name),
                          lambda: self.tm.api.host_action(host_id, action), f"Host {name}: {action} requested.")
