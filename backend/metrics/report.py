"""The figures the console shows: windows, per-minute series and per-model rates, put together
from the live counters, the GPU cost meter, the fleet and (for "today") the ledger."""

from __future__ import annotations

from backend.fleet.registry import Fleet
from backend.ledger.reports import usage_by
from backend.metrics.gpu_cost import GpuCostMeter, Stretch
from backend.metrics.live import MINUTE_US, Counts, LiveMetrics, percentile_ms
from backend.wire.admin import MetricsOut, ModelMetricsOut, ModelRatesOut, SeriesOut, WindowOut

DAY_US = 86_400_000_000
HOUR_MINUTES = 60


class MetricsReport:
    def __init__(self, live: LiveMetrics, meter: GpuCostMeter, fleet: Fleet, engine,
                 started_us: int | None = None) -> None:
        self.live, self.meter, self.fleet, self.engine = live, meter, fleet, engine
        # Made at start-up, after the last hour was replayed: the router observes from now on.
        self.started_us = fleet.clock.now_us() if started_us is None else started_us

    def observed_since(self, since: int, now: int) -> int:
        """Where a window from `since` really begins: not before the router started observing (it
        started, or the earliest request it replayed). Rates divide by the time from there."""
        first = min(self.started_us, self.live.first_us or self.started_us)
        return min(max(since, first), now)

    # ------------------------------------------------------------------ public
    async def overview(self, now: int, models: list[str], rate_window_s: int) -> MetricsOut:
        hour_since = (now // MINUTE_US - HOUR_MINUTES + 1) * MINUTE_US
        stretches = await self.meter.stretches(hour_since - MINUTE_US, now)
        counts = self.live.window(hour_since, now)
        hour = _window(counts, hour_since, now, sum(s.cost_between(hour_since, now) for s in stretches))
        hour.observed_s = (now - self.observed_since(hour_since, now)) / 1_000_000
        hour.client_errors = counts.client_errors
        day_since = now - now % DAY_US
        today = await self._today(day_since, now)
        series = self._series(now, None, stretches)
        shares = self._host_shares()
        per_model = self.live.per_model(now - rate_window_s * 1_000_000, now)
        rates = [self._rates(m, per_model.get(m) or Counts(), now, rate_window_s, shares) for m in models]
        return MetricsOut(now, hour, today, series, sum(self.meter.rate_now().values()), rates)

    async def model(self, model: str, now: int, rate_window_s: int) -> ModelMetricsOut:
        hour_since = (now // MINUTE_US - HOUR_MINUTES + 1) * MINUTE_US
        shares = self._host_shares()
        counts = self.live.window(now - rate_window_s * 1_000_000, now, model)
        stretches = [s for s in await self.meter.stretches(hour_since - MINUTE_US, now)
                     if model in shares.get(s.host_id, ())]
        return ModelMetricsOut(self._rates(model, counts, now, rate_window_s, shares),
                               self._series(now, model, stretches, shares))

    # ------------------------------------------------------------------ parts
    async def _today(self, since: int, now: int) -> WindowOut:
        rows = await usage_by(self.engine, "model", since, now + 1)
        c = Counts(requests=sum(r.requests for r in rows), failed=sum(r.failed for r in rows),
                   prompt_tokens=sum(r.prompt_tokens for r in rows),
                   completion_tokens=sum(r.completion_tokens for r in rows),
                   revenue=sum(r.charged for r in rows), payouts=sum(r.host_share for r in rows),
                   fees=sum(r.fee for r in rows))
        w = _window(c, since, now, sum((await self.meter.cost(since, now)).values()))
        w.observed_s = (now - since) / 1_000_000  # the ledger holds the whole day, whoever was running
        # Latency histograms are kept for the last hour only; a day's would be a guess after a restart.
        w.latency_p50_ms = w.latency_p99_ms = w.ttft_p50_ms = w.ttft_p99_ms = None
        return w

    def _host_shares(self) -> dict[str, tuple[str, ...]]:
        """Models each connected host serves now: its GPU cost is split evenly among them."""
        return {h.id: tuple(h.replicas) for h in self.fleet.hosts() if h.registered and h.state != "removed"}

    def _series(self, now: int, model: str | None, stretches: list[Stretch],
                shares: dict[str, tuple[str, ...]] | None = None) -> SeriesOut:
        # The 60 whole minutes before the one in progress, and that one.
        minutes = self.live.series(now, HOUR_MINUTES + 1, model)
        observed = self.observed_since(minutes[0][0], now)
        gpu = []
        for start, _ in minutes:
            end = min(start + MINUTE_US, now)
            total = 0
            for s in stretches:
                cost = s.cost_between(start, end)
                if cost and shares is not None:
                    cost //= max(len(shares.get(s.host_id, ())), 1)
                total += cost
            gpu.append(total)
        return SeriesOut(
            start_us=minutes[0][0], minute_s=60,
            observed_from=next((i for i, (start, _) in enumerate(minutes) if start + MINUTE_US > observed),
                               len(minutes) - 1),
            requests=[c.requests for _, c in minutes], failed=[c.failed for _, c in minutes],
            client_errors=[c.client_errors for _, c in minutes],
            tokens=[c.tokens for _, c in minutes], revenue_nano=[c.revenue for _, c in minutes],
            payouts_nano=[c.payouts for _, c in minutes], gpu_cost_nano=gpu,
            profit_nano=[c.revenue - c.payouts - c.fees - g for (_, c), g in zip(minutes, gpu, strict=True)],
            fees_nano=[c.fees for _, c in minutes],
            latency_p50_ms=[percentile_ms(c.latency, 0.5) for _, c in minutes],
            ttft_p50_ms=[percentile_ms(c.ttft, 0.5) for _, c in minutes])

    def _rates(self, model: str, c: Counts, now: int, window_s: int,
               shares: dict[str, tuple[str, ...]]) -> ModelRatesOut:
        # Rates divide by the time actually observed: a router up for 2 minutes has not seen 10.
        seconds = max((now - self.observed_since(now - window_s * 1_000_000, now)) / 1_000_000, 1.0)
        replicas = self.fleet.replicas(model)
        kv = [r.metrics.kv_cache_usage_perc for r in replicas if r.metrics is not None and r.ready]
        rates = self.meter.rate_now()
        gpu_per_h = sum(rates.get(h, 0) // len(ms) for h, ms in shares.items() if model in ms)
        revenue_per_h = int(c.revenue * 3600 / seconds)
        payouts_per_h = int(c.payouts * 3600 / seconds)
        fees_per_h = int(c.fees * 3600 / seconds)
        profit_per_h = revenue_per_h - payouts_per_h - fees_per_h - gpu_per_h
        return ModelRatesOut(
            model=model, window_s=window_s, requests_per_s=round(c.requests / seconds, 3),
            tokens_per_s=round(c.tokens / seconds, 1), in_flight=sum(r.outstanding for r in replicas),
            utilization=round(sum(kv) / len(kv), 4) if kv else None,
            revenue_per_h_nano=revenue_per_h, payouts_per_h_nano=payouts_per_h, gpu_cost_per_h_nano=gpu_per_h,
            profit_per_h_nano=profit_per_h,
            margin_bps=profit_per_h * 10_000 // revenue_per_h if revenue_per_h > 0 else None,
            latency_p50_ms=percentile_ms(c.latency, 0.5), ttft_p50_ms=percentile_ms(c.ttft, 0.5),
            fees_per_h_nano=fees_per_h)


def _window(c: Counts, since: int, until: int, gpu_cost: int) -> WindowOut:
    return WindowOut(since, until, c.requests, c.failed, c.prompt_tokens, c.completion_tokens, c.revenue, c.payouts,
                     gpu_cost, c.revenue - c.payouts - c.fees - gpu_cost,
                     percentile_ms(c.latency, 0.5), percentile_ms(c.latency, 0.99),
                     percentile_ms(c.ttft, 0.5), percentile_ms(c.ttft, 0.99), fees_nano=c.fees)
