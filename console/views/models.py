"""Models: availability, price (its trend, pinned or dynamic), replicas had against wanted with the
autoscaler's next move, tokens per second, utilisation and profit per hour. Keys, each confirmed
(and refused read-only): `t` toggles availability, `p` pins or unpins the price, `m` sets the
model's min/max replicas, `a` turns the autoscaler on or off for it, `l` whether clients must
acknowledge its licence before using it. Enter: the model's price with why it moved, its last
changes, the autoscaler's state and decisions, its replicas, its last hour and its licence (with
how many clients accepted it), live; Esc: back. A backend without pricing, an autoscaler or
licences (404) shows N/A there.

Rates are over the last 10 minutes. GPU cost per hour is what the model's hosts cost now, each
host's rate split evenly among the models it serves. "KV cache" is the engines' KV-cache use;
"GPU util" the mean NVML utilisation of the GPUs of the hosts serving it, where they report it.
"uptime" is OpenRouter's measure over [openrouter] uptime_window_s (30 min): answers that were not
a 5xx or a stream broken mid-way, 4xx not counted; N/A (n req) below 100 requests.
The model's name stays in view while the other columns scroll sideways (a narrow terminal);
requests per second, revenue, GPU cost per hour and the margin are in the detail, so the table
stays readable at 120 columns."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backend.wire.admin import HostOut, ModelOut, ModelRatesOut
from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, SetModelScaling
from backend.wire.pricing import ModelPricingOut, PricingOut, SetModelPricing
from console.client import AdminError
from console.figures import NA, margin, ms, per_hour, rate, share, uptime
from console.licence_detail import licence_section
from console.model_detail import (
    history_table,
    next_cell,
    price_section,
    replicas_cell,
    scaling_section,
    trend_cell,
)
from console.money import usd
from console.views.base import TableView
from console.widgets.prompt import PromptScreen
from console.widgets.spark_row import SparkRow
from console.widgets.table import plain

T = TypeVar("T")
DAY_US = 86_400_000_000
_PRICE = re.compile(r"^\d{1,9}(\.\d{1,9})?$")


def _up(m: ModelOut) -> int:
    """Replicas that can take a request now: ready, not ejected, on an active host, checked."""
    return sum(1 for r in m.replicas if r.ready and not r.ejected and r.host_status == "active" and r.check_passed)


def _uptime(m: ModelOut) -> str:
    """Uptime as OpenRouter counts it (5xx and broken streams fail; 4xx not counted); N/A from a
    backend that does not count it."""
    u = m.uptime
    return NA if u is None else uptime(u.requests, u.failures, u.min_requests)


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
            f"GPU cost {per_hour(r.gpu_cost_per_h_nano)}, "
            + (f"OpenRouter fees {per_hour(r.fees_per_h_nano)}, " if r.fees_per_h_nano else "")
            + f"profit {per_hour(r.profit_per_h_nano)}, "
            f"margin {margin(r.margin_bps)}")


async def optional(call: Awaitable[T]) -> T | None:
    """A backend without that route (404: older than pricing and the autoscaler) gives None: N/A."""
    try:
        return await call
    except AdminError as exc:
        if exc.status == 404:
            return None
        raise


def parse_price_pair(text: str, default: str) -> str:
    """`prompt,completion` in USD per 1M tokens (empty: `default`) -> "p,c" as the API wants them.
    Raises ValueError with a message for the operator."""
    text = text.strip() or default
    parts = [p.strip().removeprefix("$") for p in text.split(",")]
    if len(parts) != 2 or not all(_PRICE.match(p) for p in parts):
        raise ValueError("Enter prompt,completion in USD per 1M tokens, e.g. 0.14,0.28.")
    return ",".join(parts)


def parse_limits(text: str) -> tuple[int | None, int | None]:
    """`min,max` replicas; a side left empty (or all of it) is the [autoscaler] default (None)."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else ["", ""]
    if len(parts) != 2 or not all(p == "" or (p.isascii() and p.isdigit()) for p in parts):
        raise ValueError("Enter min,max replicas, e.g. 1,4 (a side left empty: the default).")
    low, high = (int(p) if p else None for p in parts)
    if high is not None and high < 1:
        raise ValueError("max must be at least 1.")
    if low is not None and high is not None and low > high:
        raise ValueError("min must not be more than max.")
    return low, high


def decimal_usd(nano: int) -> str:
    """Nano-USD as the plain decimal the API and the prompt take: 140000000 -> "0.14"."""
    whole, frac = divmod(nano, 10**9)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".")


def _valid_limits(text: str) -> str:
    parse_limits(text)
    return text.strip()


def _limits_text(low: int | None, high: int | None) -> str:
    return f"min {'default' if low is None else low}, max {'default' if high is None else high}"


class ModelsView(TableView):
    view_name = "models"
    # trend: ▲ ▼ = against the change before, and pin (operator) / dyn (engine) / list (pricing off);
    # reps: have (+ on their way) / want; next: the autoscaler's next move (see model_detail.next_cell).
    # uptime last: at 120 columns every other one stays in view (it is a scroll to the right there).
    columns = ("model", "on", "prompt/1M", "compl/1M", "trend", "reps", "next", "tok/s", "KV cache", "GPU util",
               "profit/h", "uptime")
    fixed_columns = 1  # the name stays while money columns scroll
    writes = frozenset({"toggle", "pin", "limits", "autoscale", "licence_ack"})
    BINDINGS = [Binding("t", "toggle", "Enable/disable"), Binding("p", "pin", "Pin/unpin price"),
                Binding("m", "limits", "Min/max"), Binding("a", "autoscale", "Autoscale"),
                Binding("l", "licence_ack", "Licence ack on/off")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.models: dict[str, ModelOut] = {}
        self.pricing: PricingOut | None = None
        self.scaling: AutoscalerOut | None = None

    def compose(self) -> ComposeResult:
        yield self.make_table()
        with VerticalScroll(id="detail", classes="detail"):
            yield Static("", id="detail-title", markup=False)
            yield Static("", id="detail-rates", markup=False)
            yield SparkRow("requests", lambda v: f"{v:,.0f}/min", id="detail-requests")
            yield SparkRow("profit", lambda v: usd(int(v)), id="detail-profit")
            yield SparkRow("latency p50", lambda v: ms(v), id="detail-latency")
            yield Static("", id="detail-price")
            yield Static("", id="detail-scaling")
            yield Static("", id="detail-history")
            yield Static("", id="detail-replicas")
            yield Static("", id="detail-licence")

    def _keep(self, pricing: PricingOut | None, scaling: AutoscalerOut | None) -> None:
        self.pricing, self.scaling = pricing, scaling

    def price_of(self, model: str) -> ModelPricingOut | None:
        return next((p for p in self.pricing.models if p.model == model), None) if self.pricing else None

    def scaling_of(self, model: str) -> ModelScalingOut | None:
        return next((s for s in self.scaling.models if s.model == model), None) if self.scaling else None

    async def refresh_table(self) -> None:
        api = self.tm.api
        models, metrics, hosts, pricing, scaling = await asyncio.gather(
            api.models(), api.metrics(), api.hosts(), optional(api.pricing()), optional(api.autoscaler()))
        self._keep(pricing, scaling)
        rates = {r.model: r for r in metrics.models}
        by_id = {h.id: h for h in hosts}
        self.models = {m.id: m for m in models}
        rows = []
        for m in sorted(models, key=lambda m: m.id):
            r = rates.get(m.id)
            p, s = self.price_of(m.id), self.scaling_of(m.id)
            prompt, completion = ((p.prompt_per_mtok_nano, p.completion_per_mtok_nano) if p else
                                  (m.price_prompt_per_mtok_nano, m.price_completion_per_mtok_nano))
            rows.append((m.id, (m.id, "yes" if m.enabled else "NO", usd(prompt), usd(completion), trend_cell(p),
                                replicas_cell(s, _up(m), scaling is not None), next_cell(s, scaling),
                                rate(r.tokens_per_s) if r else NA, share(r.utilization) if r else NA,
                                share(gpu_util(m, by_id)), per_hour(r.profit_per_h_nano) if r else NA, _uptime(m))))
        self.set_rows(rows)

    async def refresh_detail(self, key: str) -> None:
        api = self.tm.api
        m = next((m for m in await api.models() if m.id == key), None)
        if m is None:
            self.query_one("#detail-title", Static).update(f"{key}: not in the catalogue any more (Esc: back)")
            return
        self.models[m.id] = m
        now = self.tm.now_us()
        detail, pricing, scaling, history, licence = await asyncio.gather(
            api.model_metrics(key), optional(api.pricing()), optional(api.autoscaler()),
            optional(api.model_prices(key, from_us=now - DAY_US, to_us=now)), optional(api.model_licence(key)))
        self._keep(pricing, scaling)
        state = "enabled" if m.enabled else "DISABLED"
        self.query_one("#detail-title", Static).update(
            f"{m.name} ({m.id})  {state}  context {m.context_length:,}  {usd(m.price_prompt_per_mtok_nano)} / "
            f"{usd(m.price_completion_per_mtok_nano)} per 1M prompt / completion  (Esc: back)")
        self.query_one("#detail-rates", Static).update(rates_line(detail.rates))
        self.query_one("#detail-requests", SparkRow).show(detail.series.requests, detail.series.observed_from)
        self.query_one("#detail-profit", SparkRow).show(detail.series.profit_nano, detail.series.observed_from)
        self.query_one("#detail-latency", SparkRow).show(detail.series.latency_p50_ms, detail.series.observed_from)
        self.query_one("#detail-price", Static).update(price_section(self.price_of(key)))
        self.query_one("#detail-scaling", Static).update(scaling_section(key, self.scaling_of(key), self.scaling))
        self.query_one("#detail-history", Static).update(history_table(history.changes if history else None))
        self.query_one("#detail-replicas", Static).update(replicas_table(m))
        self.query_one("#detail-licence", Static).update(licence_section(licence))

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

    # ------------------------------------------------------------------ price and replicas
    def _target(self, what: str) -> str | None:
        """The model the key acts on (the row under the cursor, or the one drilled into), once the
        console may write at all (read-only: refused with a word why); None when there is none."""
        if not self.writable(what):
            return None
        model = self.selected_key()
        return model if model in self.models else None

    @work(group="action", exclusive=True)
    async def action_pin(self) -> None:
        model = self._target("pin price")
        if model is None:
            return
        p = self.price_of(model)
        if p is None:
            self.notify("This backend has no dynamic pricing: nothing to pin.", severity="warning")
            return
        if p.pinned:
            now = f"{usd(p.prompt_per_mtok_nano)} / {usd(p.completion_per_mtok_nano)}"
            await self.mutate("unpin price", f"Unpin the price of {model} ({now} per 1M prompt / completion)?\n"
                                             "The engine prices it again from there.",
                              lambda: self.tm.api.set_model_pricing(model, SetModelPricing(pinned=False)),
                              f"Model {model}: price unpinned.")
            return
        current = f"{decimal_usd(p.prompt_per_mtok_nano)},{decimal_usd(p.completion_per_mtok_nano)}"
        answer = await self.app.push_screen_wait(PromptScreen(
            f"Pin the price of {model}: prompt,completion in USD per 1M tokens (Enter alone: now's, {current})",
            lambda text: parse_price_pair(text, current), current))
        if not answer:
            return
        prompt_usd, completion_usd = answer.split(",")
        await self.mutate("pin price", f"Pin {model} at ${prompt_usd} / ${completion_usd} per 1M prompt / "
                                       "completion?\nThe engine stops pricing it until it is unpinned.",
                          lambda: self.tm.api.set_model_pricing(model, SetModelPricing(
                              pinned=True, prompt_usd=prompt_usd, completion_usd=completion_usd)),
                          f"Model {model}: price pinned at ${prompt_usd} / ${completion_usd}.")

    @work(group="action", exclusive=True)
    async def action_limits(self) -> None:
        model = self._target("set replicas")
        if model is None:
            return
        if self.scaling is None:
            self.notify("This backend has no autoscaler: no replica limits to set.", severity="warning")
            return
        s = self.scaling_of(model)  # None: a model it does not look after yet (the defaults)
        now = "the defaults" if s is None else f"{s.min_replicas},{s.max_replicas}"
        answer = await self.app.push_screen_wait(PromptScreen(
            f"Replicas of {model}: min,max (now {now}); a side left empty, or both: the [autoscaler] defaults",
            _valid_limits, "min,max" if s is None else f"{s.min_replicas},{s.max_replicas}"))
        if answer is None:
            return
        low, high = parse_limits(answer)
        await self.mutate("set replicas", f"Scale {model} within {_limits_text(low, high)}?",
                          lambda: self.tm.api.set_model_scaling(model, SetModelScaling(min_replicas=low,
                                                                                       max_replicas=high)),
                          f"Model {model}: replicas {_limits_text(low, high)}.")

    @work(group="action", exclusive=True)
    async def action_autoscale(self) -> None:
        model = self._target("autoscaler on/off")
        if model is None:
            return
        if self.scaling is None:
            self.notify("This backend has no autoscaler.", severity="warning")
            return
        s = self.scaling_of(model)
        enable = s is not None and not s.model_enabled  # one it does not look after yet is on by default
        verb = "on" if enable else "off"
        consequence = ("\nIt rents and releases replicas of it within its min and max." if enable else
                       "\nIts replicas stay as they are; nothing is rented or released for it.")
        if not self.scaling.enabled:
            consequence += ("\n(The autoscaler is off altogether, [autoscaler] enabled = false: this applies "
                            "once it is on.)")
        await self.mutate(f"autoscaler {verb}", f"Turn the autoscaler {verb} for {model}?{consequence}",
                          lambda: self.tm.api.set_model_scaling(model, SetModelScaling(enabled=enable)),
                          f"Model {model}: autoscaler {verb}.")

    @work(group="action", exclusive=True)
    async def action_licence_ack(self) -> None:
        model = self._target("licence acknowledgement")
        if model is None:
            return
        lic = await optional(self.tm.api.model_licence(model))  # read now: the operator decides on what is true
        if lic is None:
            self.notify("This backend does not manage licences.", severity="warning")
            return
        what = f"the {lic.licence} (version {lic.version}) of {model}"
        if lic.requires_acceptance:
            question = (f"Stop asking clients to acknowledge {what}?\nEvery client may use the model at once, "
                        f"accepted or not ({lic.accepted_current} accepted this version).")
            done = f"Model {model}: its licence needs no acknowledgement."
        else:
            question = (f"Require clients to acknowledge {what} before using it?\nClients that have not accepted "
                        f"this version ({lic.accepted_current} have) get 403 licence_not_accepted until they do.")
            done = f"Model {model}: clients must acknowledge its licence."
        await self.mutate("licence acknowledgement", question,
                          lambda: self.tm.api.set_licence_policy(model, not lic.requires_acceptance), done)
