"""Models: availability, replicas, price, demand, utilisation and money per hour; `t` toggles
availability (confirmed). Enter: the model's replicas and its last hour, live; Esc: back.

Rates are over the last 10 minutes. GPU cost per hour is what the model's hosts cost now, each
host's rate split evenly among the models it serves. "KV cache" is the engines' KV-cache use;
"GPU util" the mean NVML utilisation of the GPUs of the hosts serving it, where they report it.
The model's name stays in view while the other columns scroll sideways (a narrow terminal)."""

from __future__ import annotations

import asyncio

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.admin import HostOut, ModelOut, ModelRatesOut
from console.figures import NA, margin, ms, per_hour, rate, share
from console.money import usd
from console.views.base import TableView
from console.widgets.spark_row import SparkRow
from console.widgets.table import plain


def _up(m: ModelOut) -> int:
    """Replicas that can take a request now: ready, not ejected, on an active host, checked."""
    return sum(1 for r in m.replicas if r.ready and not r.ejected and r.host_status == "active" and r.check_passed)


def _check(passed: bool | None) -> str:
    return "not yet" if passed is None else ("passed" if passed else "FAILED")


def replicas_table(m: ModelOut) -> Table:
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for col in ("host", "status", "ready", "ejected", "in-flight", "check", "engine URL"):
        table.add_column(col)
    for r in m.replicas:
        table.add_row(plain(r.host_name), r.host_status, "yes" if r.ready else "no", "yes" if r.ejected else "no",
                      str(r.outstanding), _check(r.check_passed), plain(r.url))
    if not m.replicas:
        table.add_row("-", "no host serves this model", "", "", "", "", "")
    return table


def gpu_util(m: ModelOut, hosts: dict[str, HostOut]) -> float | None:
    """Mean utilisation (0..1) of the GPUs of the hosts serving `m`; None where none reports it."""
    seen = {r.host_id for r in m.replicas}
    pcts = [g.utilization_pct for h in seen if h in hosts for g in hosts[h].gpus if g.utilization_pct is not None]
    return sum(pcts) / len(pcts) / 100 if pcts else None


def rates_line(r: ModelRatesOut) -> str:
    return (f"last {r.window_s // 60} min: {rate(r.requests_per_s)} req/s, {rate(r.tokens_per_s)} tok/s, "
            f"latency p50 {ms(r.latency_p50_ms)}, TTFT p50 {ms(r.ttft_p50_ms)}, KV cache {share(r.utilization)}\n"
            f"per hour: revenue {per_hour(r.revenue_per_h_nano)}, host payouts {per_hour(r.payouts_per_h_nano)}, "
            f"GPU cost {per_hour(r.gpu_cost_per_h_nano)}, profit {per_hour(r.profit_per_h_nano)}, "
            f"margin {margin(r.margin_bps)}")


class ModelsView(TableView):
    view_name = "models"
    columns = ("model", "on", "reps", "prompt/1M", "compl/1M", "req/s", "tok/s", "KV cache", "GPU util", "rev/h",
               "GPU/h", "profit/h", "margin")
    fixed_columns = 1  # the name stays while money columns scroll
    writes = frozenset({"toggle"})
    BINDINGS = [Binding("t", "toggle", "Enable/disable")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.models: dict[str, ModelOut] = {}

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="detail-title", markup=False)
            yield Static("", id="detail-rates", markup=False)
            yield SparkRow("requests", lambda v: f"{v:,.0f}/min", id="detail-requests")
            yield SparkRow("profit", lambda v: usd(int(v)), id="detail-profit")
            yield SparkRow("latency p50", lambda v: ms(v), id="detail-latency")
            yield Static("", id="detail-replicas")

    async def refresh_table(self) -> None:
        api = self.tm.api
        models, metrics, hosts = await asyncio.gather(api.models(), api.metrics(), api.hosts())
        rates = {r.model: r for r in metrics.models}
        by_id = {h.id: h for h in hosts}
        self.models = {m.id: m for m in models}
        rows = []
        for m in sorted(models, key=lambda m: m.id):
            r = rates.get(m.id)
            money = (per_hour(r.revenue_per_h_nano), per_hour(r.gpu_cost_per_h_nano),
                     per_hour(r.profit_per_h_nano), margin(r.margin_bps)) if r else (NA,) * 4
            rows.append((m.id, (m.id, "yes" if m.enabled else "NO", f"{_up(m)}/{len(m.replicas)}",
                                usd(m.price_prompt_per_mtok_nano), usd(m.price_completion_per_mtok_nano),
                                rate(r.requests_per_s) if r else NA, rate(r.tokens_per_s) if r else NA,
                                share(r.utilization) if r else NA, share(gpu_util(m, by_id)), *money)))
        self.set_rows(rows)

    async def refresh_detail(self, key: str) -> None:
        api = self.tm.api
        m = next((m for m in await api.models() if m.id == key), None)
        if m is None:
            self.query_one("#detail-title", Static).update(f"{key}: not in the catalogue any more (Esc: back)")
            return
        self.models[m.id] = m
        detail = await api.model_metrics(key)
        state = "enabled" if m.enabled else "DISABLED"
        self.query_one("#detail-title", Static).update(
            f"{m.name} ({m.id})  {state}  context {m.context_length:,}  {usd(m.price_prompt_per_mtok_nano)} / "
            f"{usd(m.price_completion_per_mtok_nano)} per 1M prompt / completion  (Esc: back)")
        self.query_one("#detail-rates", Static).update(rates_line(detail.rates))
        self.query_one("#detail-requests", SparkRow).show(detail.series.requests, detail.series.observed_from)
        self.query_one("#detail-profit", SparkRow).show(detail.series.profit_nano, detail.series.observed_from)
        self.query_one("#detail-latency", SparkRow).show(detail.series.latency_p50_ms, detail.series.observed_from)
        self.query_one("#detail-replicas", Static).update(replicas_table(m))

    @on(DataTable.RowSelected)
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value in self.models:
            self.drill(event.row_key.value)

    @work(group="action", exclusive=True)
    async def action_toggle(self) -> None:
        model = self.selected_key()
        if model is None or model not in self.models:
            return
        enable = not self.models[model].enabled
        verb = "enable" if enable else "disable"
        consequence = "" if enable else "\nClients asking for it get 404 until it is enabled again."
        await self.mutate(f"{verb} model", f"{verb.capitalize()} model {model}?{consequence}",
                          lambda: self.tm.api.set_model_enabled(model, enable), f"Model {model}: {verb}d.")
