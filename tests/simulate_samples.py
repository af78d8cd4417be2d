"""Hand-made SimResults for the renderers' tests: a few days of two models, built so that every figure
is known (hours first, then the days and totals summed from them, as the simulator's report does)."""

from __future__ import annotations

import datetime as dt
import math

from backend.simulate.plan import FleetEntry, SimPlan
from backend.simulate.result import TOTAL, BreakEven, DayModelRow, Decision, HourPoint, SimResult

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
START_US = int(START.timestamp()) * 1_000_000
NANO = 1_000_000_000

MODELS = ("llama-3.1-8b", "qwen2.5-72b")
# Prices per million tokens (prompt, completion), nano-USD; the completion price of the first model
# changes at hour PRICE_STEP_HOUR.
PRICES = {"llama-3.1-8b": (50_000_000, 200_000_000), "qwen2.5-72b": (400_000_000, 1_200_000_000)}
PRICE_STEP_HOUR = 10
STEPPED_COMPLETION = 250_000_000
GPU_COST_PER_HOUR = {"llama-3.1-8b": 250_000_000, "qwen2.5-72b": 2_600_000_000}  # llama gains, qwen loses
LOSS_HOUR = 3  # every model loses money in this hour of each day (no revenue at all)


def _hour(model: str, h: int) -> HourPoint:
    """Revenue follows a daily wave; hour LOSS_HOUR of each day earns nothing."""
    prompt, completion = PRICES[model]
    if model == MODELS[0] and h >= PRICE_STEP_HOUR:
        completion = STEPPED_COMPLETION
    wave = 0.5 + 0.45 * math.sin((h % 24 - 6) / 24 * 2 * math.pi)
    idle = h % 24 == LOSS_HOUR
    requests = 0 if idle else int(8000 * wave) + 1
    revenue = 0 if idle else requests * (prompt * 1000 + completion * 250) // 1_000_000  # 1k prompts, 250 replies
    gpu = GPU_COST_PER_HOUR[model]
    payouts = revenue // 10 if model == MODELS[1] else 0
    if model == MODELS[0]:  # scaled up at hour 2 (the sample's decision) for a day
        replicas, util = (2.0 if 2 <= h < 26 else 1.0), round(wave * 0.8, 4)
    else:
        replicas, util = 2.0, round(0.15 + wave * 0.5, 4)
    return HourPoint(START_US + h * HOUR_US, model, requests, revenue, gpu, payouts, revenue - payouts - gpu,
                     None if idle else util, replicas, prompt, completion)


def _row(day: str, model: str, hours: list[HourPoint]) -> DayModelRow:
    revenue = sum(h.revenue_nano for h in hours)
    gpu = sum(h.gpu_cost_nano for h in hours)
    payouts = sum(h.payouts_nano for h in hours)
    requests = sum(h.requests for h in hours)
    utils = [h.utilization for h in hours if h.utilization is not None]
    profit = revenue - payouts - gpu
    return DayModelRow(day, model, requests, requests // 100, requests * 1000, requests * 250,
                       sum(utils) / len(utils) if utils else None, float(len(hours)), revenue, gpu, payouts,
                       profit, profit * 10_000 // revenue if revenue > 0 else None)


def sample_result(days: int = 3, models: tuple[str, ...] = MODELS, hours: int | None = None) -> SimResult:
    n_hours = hours if hours is not None else days * 24
    per_hour: list[HourPoint] = []
    for h in range(n_hours):
        points = [_hour(m, h) for m in models]
        per_hour.extend(points)
        per_hour.append(HourPoint(
            START_US + h * HOUR_US, TOTAL, sum(p.requests for p in points), sum(p.revenue_nano for p in points),
            sum(p.gpu_cost_nano for p in points), sum(p.payouts_nano for p in points),
            sum(p.profit_nano for p in points), None, sum(p.replicas for p in points), 0, 0))
    day_rows: list[DayModelRow] = []
    for d in range(-(-n_hours // 24)):
        label = (START + dt.timedelta(days=d)).date().isoformat()
        rows = [_row(label, m, [p for p in per_hour if p.model == m and d * 24 <= (p.start_us - START_US)
                                // HOUR_US < (d + 1) * 24]) for m in models]
        day_rows.extend(rows)
        day_rows.append(_sum(label, TOTAL, rows))
    totals = [_sum(TOTAL, m, [r for r in day_rows if r.model == m]) for m in models]
    totals.append(_sum(TOTAL, TOTAL, totals))
    decisions = [
        Decision(START_US + 2 * HOUR_US + 60_000_000, "autoscale.scale_up", models[0],
                 "utilization 0.91 above 0.80 for 10 min: one more replica"),
        Decision(START_US + 5 * HOUR_US, "autoscale.scale_down", models[-1], "utilization 0.12 below 0.30"),
        Decision(START_US + 7 * HOUR_US, "host.provisioned", "host-7", "rtx4090 at vast, $0.35/h"),
    ]
    break_even = [
        BreakEven(models[0], "rtx4090", "RTX 4090", 1, "vast", 350_000_000, 1800.0, 1_300_000_000, 0.2692, 0.41),
        BreakEven(models[-1], "a100-80gb", "A100 80GB", 8, "runpod", 2_400_000_000, 5000.0, 0, None, None),
    ]
    return SimResult(
        plan=SimPlan(days=float(days), models=models, fleet=(FleetEntry("rtx4090", "vast", 1, models[0]),
                                                              FleetEntry("a100-80gb", "runpod", 1))),
        start_us=START_US, end_us=START_US + n_hours * HOUR_US, days=day_rows, totals=totals,
        break_even=break_even, decisions=decisions, hours=per_hour, price_changes=1,
        mean_prompt_tokens=1000.0, mean_completion_tokens=250.0, simulated_requests=totals[-1].requests,
        notes=["Demand assumed: 40 % of the starting fleet's capacity at the market's middle price."])


def _sum(day: str, model: str, rows: list[DayModelRow]) -> DayModelRow:
    revenue = sum(r.revenue_nano for r in rows)
    profit = sum(r.profit_nano for r in rows)
    utils = [r.utilization for r in rows if r.utilization is not None]
    return DayModelRow(day, model, sum(r.requests for r in rows), sum(r.failed for r in rows),
                       sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows),
                       sum(utils) / len(utils) if utils else None, sum(r.replica_hours for r in rows), revenue,
                       sum(r.gpu_cost_nano for r in rows), sum(r.payouts_nano for r in rows), profit,
                       profit * 10_000 // revenue if revenue > 0 else None)
