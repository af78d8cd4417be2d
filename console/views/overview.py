"""Overview: money for the last hour and today, traffic and latency, the last hour per minute as
sparklines, what is up, and the projections (today and this month, the profit target, break-even)."""

from __future__ import annotations

import asyncio

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from backend.wire.admin import MetricsOut, WindowOut
from backend.wire.projections import ProjectionsOut
from console.client import AdminError
from console.figures import NA, ms, pct, rate
from console.money import usd
from console.views.base import View
from console.widgets.projections import ProjectionsPanel
from console.widgets.spark_row import SparkRow


def money_table(m: MetricsOut) -> Table:
    t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    t.add_column("")
    t.add_column("last hour", justify="right")
    t.add_column("today (UTC)", justify="right")
    rows = [("revenue", "revenue_nano"), ("host payouts", "payouts_nano"), ("GPU cost", "gpu_cost_nano"),
            ("profit", "profit_nano")]
    if m.hour.fees_nano or m.today.fees_nano:  # only where traffic came through OpenRouter
        rows.insert(3, ("OpenRouter fees", "fees_nano"))
    for label, field in rows:
        t.add_row(label, usd(getattr(m.hour, field)), usd(getattr(m.today, field)))
    t.add_row("requests", f"{m.hour.requests:,}", f"{m.today.requests:,}")
    return t


def traffic_table(w: WindowOut) -> Table:
    # The time the backend observed, not the whole hour: one started 2 minutes ago saw 2 minutes.
    seconds = max(w.observed_s, 1.0)
    t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    t.add_column("")
    t.add_column("last hour", justify="right")
    t.add_row("requests/s", rate(w.requests / seconds))
    t.add_row("tokens/s", rate((w.prompt_tokens + w.completion_tokens) / seconds))
    # The service's failures only: a client's bad request (4xx) is counted apart, never as an error of ours.
    t.add_row("error rate", pct(w.failed, w.requests))
    t.add_row("client errors/s", NA if w.client_errors is None else rate(w.client_errors / seconds))
    t.add_row("latency p50/p99", f"{ms(w.latency_p50_ms)} / {ms(w.latency_p99_ms)}")
    t.add_row("TTFT p50/p99", f"{ms(w.ttft_p50_ms)} / {ms(w.ttft_p99_ms)}")
    return t


class OverviewView(View):
    view_name = "overview"
    DEFAULT_CSS = """
    OverviewView { padding: 0 1; }
    OverviewView #tables { height: auto; }
    OverviewView #money { width: auto; margin-right: 3; }
    OverviewView #traffic { width: auto; }
    OverviewView #sparks-title { margin-top: 1; text-style: bold; }
    OverviewView #fleet { height: auto; margin-top: 1; }
    OverviewView ProjectionsPanel { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="tables"):
            yield Static("loading…", id="money")
            yield Static("", id="traffic")
        yield Static("last hour, per minute", id="sparks-title")
        yield SparkRow("requests", lambda v: f"{v:,.0f}/min", id="spark-requests")
        yield SparkRow("profit", lambda v: usd(int(v)), id="spark-profit")
        yield SparkRow("latency p50", lambda v: ms(v), id="spark-latency")
        yield SparkRow("errors", lambda v: f"{v:,.0f}/min", id="spark-errors")
        yield SparkRow("client errors", lambda v: f"{v:,.0f}/min", id="spark-client-errors")
        yield Static("", id="fleet")
        yield ProjectionsPanel(id="projections")

    async def refresh_data(self) -> None:
        api = self.tm.api
        m, hosts, models, projections = await asyncio.gather(api.metrics(), api.hosts(), api.models(),
                                                             _projections(api))
        self.query_one("#money", Static).update(money_table(m))
        self.query_one("#traffic", Static).update(traffic_table(m.hour))
        s = m.series
        self.query_one("#spark-requests", SparkRow).show(s.requests, s.observed_from)
        self.query_one("#spark-profit", SparkRow).show(s.profit_nano, s.observed_from)
        self.query_one("#spark-latency", SparkRow).show(s.latency_p50_ms, s.observed_from)
        self.query_one("#spark-errors", SparkRow).show(s.failed, s.observed_from)
        self.query_one("#spark-client-errors", SparkRow).show(s.client_errors or [None] * len(s.failed),
                                                              s.observed_from)

        live = [h for h in hosts if h.status != "removed"]
        up = sum(1 for h in live if h.status in ("active", "quarantined", "draining", "drained"))
        enabled = sum(1 for m in models if m.enabled)
        serving = sum(1 for m in models if m.enabled and any(r.ready and not r.ejected and r.check_passed
                                                              for r in m.replicas))
        self.query_one("#fleet", Static).update(
            f"hosts up {up}/{len(live)}   models enabled {enabled}/{len(models)}, serving {serving}   "
            f"GPU cost now {usd(m.gpu_cost_per_h_nano)}/h")
        self.query_one(ProjectionsPanel).show(projections)


async def _projections(api) -> ProjectionsOut | None:
    """None from a backend without projections (404): the panel says N/A, the rest still shows."""
    try:
        return await api.projections()
    except AdminError as exc:
        if exc.status == 404:
            return None
        raise
