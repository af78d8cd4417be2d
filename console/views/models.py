"""Models: price, replicas up, today's requests and revenue; `t` toggles enabled (confirmed)."""

from __future__ import annotations

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from backend.api.admin_wire import ModelOut
from console.money import usd
from console.views.base import TableView
from console.widgets.detail import DetailScreen


class ModelsView(TableView):
    view_name = "models"
    columns = ("model", "enabled", "replicas", "prompt/1M", "compl./1M", "req today", "revenue today")
    BINDINGS = [Binding("t", "toggle", "Enable/disable")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.enabled: dict[str, bool] = {}
        self.models: dict[str, ModelOut] = {}

    def compose(self) -> ComposeResult:
        yield self.make_table()

    async def refresh_data(self) -> None:
        models = await self.tm.api.models()
        usage = {u.group: u for u in await self.tm.api.usage("model", self.tm.start_of_day_us(), None)}
        self.enabled = {m.id: m.enabled for m in models}
        self.models = {m.id: m for m in models}
        rows = []
        for m in sorted(models, key=lambda m: m.id):
            up = sum(1 for r in m.replicas if r.ready and not r.ejected and r.host_status == "active")
            u = usage.get(m.id)
            rows.append((m.id, (m.id, "yes" if m.enabled else "NO", f"{up}/{len(m.replicas)}",
                                usd(m.price_prompt_per_mtok_nano, 3), usd(m.price_completion_per_mtok_nano, 3),
                                u.requests if u else 0, usd(u.charged_nano if u else 0))))
        self.set_rows(rows)

    @on(DataTable.RowSelected)
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        model = self.models.get(event.row_key.value)
        if model is None:
            return
        table = Table(box=None, padding=(0, 2), header_style="bold")
        for col in ("host", "status", "ready", "ejected", "outstanding", "url"):
            table.add_column(col)
        for r in model.replicas:
            table.add_row(r.host_name, r.host_status, "yes" if r.ready else "no", "yes" if r.ejected else "no",
                          str(r.outstanding), r.url)
        if not model.replicas:
            table.add_row("-", "no replica serves this model", "", "", "", "")
        self.app.push_screen(DetailScreen(f"{model.name} ({model.id}), context {model.context_length:,}", table))

    @work(group="action", exclusive=True)
    async def action_toggle(self) -> None:
        model = self.selected_key()
        if model is None:
            return
        enable = not self.enabled.get(model, True)
        verb = "enable" if enable else "disable"
        consequence = "" if enable else "\nClients asking for it get 404 until it is enabled again."
        await self.mutate(f"{verb} model", f"{verb.capitalize()} model {model}?{consequence}",
                          lambda: self.tm.api.set_model_enabled(model, enable), f"Model {model}: {verb}d.")
