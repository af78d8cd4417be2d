"""Overview: money for the last hour and today, throughput, and what is up."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.widgets import Static

from backend.api.admin_wire import UsageOut
from console.money import usd
from console.views.base import View

HOUR_US = 3_600_000_000


class _Window:
    """Totals of the per-model usage rows over one time window."""

    def __init__(self, rows: list[UsageOut], seconds: int, gpu_cost_nano: int) -> None:
        self.requests = sum(r.requests for r in rows)
        self.failed = sum(r.failed for r in rows)
        self.tokens = sum(r.prompt_tokens + r.completion_tokens for r in rows)
        self.revenue = sum(r.charged_nano for r in rows)
        self.payouts = sum(r.host_share_nano for r in rows)
        self.gpu_cost = gpu_cost_nano
        self.seconds = max(seconds, 1)

    @property
    def profit(self) -> int:
        return self.revenue - self.payouts - self.gpu_cost

    def per_s(self, n: int) -> str:
        return f"{n / self.seconds:.2f}"

    @property
    def error_rate(self) -> str:
        return f"{100 * self.failed / self.requests:.1f}%" if self.requests else "0.0%"


class OverviewView(View):
    view_name = "overview"
    DEFAULT_CSS = """
    OverviewView { padding: 0 1; }
    OverviewView #money { height: auto; }
    OverviewView #fleet { height: auto; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="money")
        yield Static("", id="fleet")

    async def refresh_data(self) -> None:
        api, now = self.tm.api, self.tm.now_us()
        day_start = self.tm.start_of_day_us()
        hour = await api.usage("model", now - HOUR_US, now)
        today = await api.usage("model", day_start, now)
        hosts, models = await api.hosts(), await api.models()
        # GPU cost is an estimate: what the hosts up now cost per hour, over the window.
        cost_per_hour = sum(h.cost_per_hour_nano for h in hosts if h.status not in ("removed", "down"))
        day_us = max(now - day_start, 1)
        w_hour = _Window(hour, 3600, cost_per_hour)
        w_today = _Window(today, day_us // 1_000_000, cost_per_hour * day_us // HOUR_US)

        money = Table(box=None, padding=(0, 2), header_style="bold", expand=False)
        money.add_column("")
        money.add_column("last hour", justify="right")
        money.add_column("today (UTC)", justify="right")
        for label, attr in (("revenue", "revenue"), ("host payouts", "payouts"), ("GPU cost (est.)", "gpu_cost"),
                            ("profit", "profit")):
            money.add_row(label, usd(getattr(w_hour, attr), 4), usd(getattr(w_today, attr), 4))
        money.add_row("", "", "")
        money.add_row("requests", f"{w_hour.requests:,}", f"{w_today.requests:,}")
        money.add_row("requests/s", w_hour.per_s(w_hour.requests), w_today.per_s(w_today.requests))
        money.add_row("tokens/s", w_hour.per_s(w_hour.tokens), w_today.per_s(w_today.tokens))
        money.add_row("error rate", w_hour.error_rate, w_today.error_rate)
        self.query_one("#money", Static).update(money)

        live = [h for h in hosts if h.status != "removed"]
        up = sum(1 for h in live if h.status == "active")
        enabled = sum(1 for m in models if m.enabled)
        serving = sum(1 for m in models if m.enabled and any(r.ready and not r.ejected for r in m.replicas))
        self.query_one("#fleet", Static).update(
            f"hosts up {up}/{len(live)}   models enabled {enabled}/{len(models)}, serving {serving}   "
            f"GPU cost {usd(cost_per_hour)}/h")
