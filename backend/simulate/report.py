"""The simulation's figures, read back from the run's own ledger and GPU meter.

Revenue, host payouts, requests and tokens per day and model come from `usage_by` (what the admin
API's usage report runs); GPU cost from the meter's uptime stretches (what the console's figures
use), each host's cost counted to the model it served. Utilization is the simulator's own measure
(work served over routable replica time): the ledger does not hold it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from backend.catalogue.capacity import break_even_utilization, replica_capacity
from backend.ledger.reports import usage_by
from backend.ledger.tables import UsageEvent
from backend.metrics.gpu_cost import Stretch
from backend.runtime.clock import from_us
from backend.simulate.result import TOTAL, BreakEven, DayModelRow, Decision, HourPoint, SimResult

if TYPE_CHECKING:
    from backend.app import Services
    from backend.simulate.run import SimRun

HOUR_US, DAY_US = 3_600_000_000, 86_400_000_000
DECISION_KINDS = ("autoscale.scale_up", "autoscale.scale_down", "autoscale.resume", "autoscale.teardown",
                  "autoscale.budget", "autoscale.no_offer", "host.provisioned", "provision.failed")


def _row(day: str, model: str, requests: int, failed: int, prompt: int, completion: int, util: float | None,
         replica_h: float, revenue: int, gpu: int, payouts: int) -> DayModelRow:
    profit = revenue - payouts - gpu
    return DayModelRow(day, model, requests, failed, prompt, completion, util, replica_h, revenue, gpu, payouts,
                       profit, profit * 10_000 // revenue if revenue > 0 else None)


def _sum(rows: list[DayModelRow], day: str, model: str) -> DayModelRow:
    work = sum((r.utilization or 0.0) * r.replica_hours for r in rows)
    replica_h = sum(r.replica_hours for r in rows)
    return _row(day, model, sum(r.requests for r in rows), sum(r.failed for r in rows),
                sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows),
                work / replica_h if replica_h else None, replica_h, sum(r.revenue_nano for r in rows),
                sum(r.gpu_cost_nano for r in rows), sum(r.payouts_nano for r in rows))


def _gpu_by_model(stretches: list[Stretch], host_model: dict[str, str], since: int, until: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stretches:
        model = host_model.get(s.host_id)
        if model is not None:
            out[model] = out.get(model, 0) + s.cost_between(since, until)
    return out


async def build_result(run: SimRun, services: Services) -> SimResult:
    start, end, models = run.start_us, run.end_us, run.models
    stretches = await services.metrics.meter.stretches(start, end)
    days: list[DayModelRow] = []
    per_model: dict[str, list[DayModelRow]] = {m: [] for m in models}
    day_starts = list(range(start, end, DAY_US))
    for i, since in enumerate(day_starts):
        until = min(since + DAY_US, end)
        label = from_us(since).date().isoformat()
        usage = {r.group: r for r in await usage_by(services.engine, "model", since, until)}
        gpu = _gpu_by_model(stretches, run.host_model, since, until)
        rows = []
        for m in models:
            u = usage.get(m)
            t = run.days.get((i, m))
            util = t.work_s / t.replica_s if t is not None and t.replica_s else None
            refused = t.refused if t is not None else 0
            row = _row(label, m, (u.requests if u else 0) + refused, (u.failed if u else 0) + refused,
                       u.prompt_tokens if u else 0, u.completion_tokens if u else 0, util,
                       (t.replica_s / 3600 if t is not None else 0.0), u.charged if u else 0, gpu.get(m, 0),
                       u.host_share if u else 0)
            rows.append(row)
            per_model[m].append(row)
        days.extend(rows)
        days.append(_sum(rows, label, TOTAL))
    totals = [_sum(per_model[m], TOTAL, m) for m in models]
    totals.append(_sum(totals, TOTAL, TOTAL))
    hours = await _hours(run, services, stretches)
    mean_prompt, mean_completion = _mix(totals[-1])
    return SimResult(
        plan=run.plan, start_us=start, end_us=end, days=days, totals=totals,
        break_even=_break_even(run, totals, mean_prompt, mean_completion),
        decisions=[Decision(e.ts_us, e.kind, e.subject, e.message) for e in run.events
                   if e.kind in DECISION_KINDS and start - HOUR_US <= e.ts_us <= end],
        hours=hours, price_changes=sum(1 for e in run.events if e.kind == "price.changed" and start <= e.ts_us <= end),
        mean_prompt_tokens=mean_prompt, mean_completion_tokens=mean_completion,
        simulated_requests=totals[-1].requests, notes=list(run.notes))


def _mix(total: DayModelRow) -> tuple[float, float]:
    served = total.requests - total.failed
    if served <= 0:
        from backend.simulate.demand import MEAN_COMPLETION, MEAN_PROMPT
        return MEAN_PROMPT, MEAN_COMPLETION
    return total.prompt_tokens / served, total.completion_tokens / served


async def _hours(run: SimRun, services: Services, stretches: list[Stretch]) -> list[HourPoint]:
    t = UsageEvent.__table__
    hour = ((t.c.created_us - run.start_us) // HOUR_US).label("hour")  # integer division in SQL
    q = (select(t.c.model, hour, func.sum(t.c.requests), func.sum(t.c.charged), func.sum(t.c.host_share))
         .where(t.c.created_us >= run.start_us, t.c.created_us < run.end_us)
         .group_by(t.c.model, hour))
    money: dict[tuple[int, str], tuple[int, int, int]] = {}
    async with services.engine.connect() as conn:
        for model, hour, requests, charged, share in (await conn.execute(q)).all():
            money[(int(hour), model)] = (int(requests), int(charged), int(share))
    out: list[HourPoint] = []
    n_hours = -(-(run.end_us - run.start_us) // HOUR_US)
    for h in range(n_hours):
        since = run.start_us + h * HOUR_US
        until = min(since + HOUR_US, run.end_us)
        gpu = _gpu_by_model(stretches, run.host_model, since, until)
        total = [0, 0, 0, 0, 0.0, 0.0]  # requests, revenue, gpu, payouts, work, replica_s
        for m in run.models:
            requests, revenue, payouts = money.get((h, m), (0, 0, 0))
            tally = run.hours.get((h, m))
            work, replica_s = (tally.work_s, tally.replica_s) if tally is not None else (0.0, 0.0)
            prompt, completion = run.prices.get((h, m), (0, 0))
            g = gpu.get(m, 0)
            out.append(HourPoint(since, m, requests, revenue, g, payouts, revenue - payouts - g,
                                 work / replica_s if replica_s else None, replica_s / (until - since) * 1e6,
                                 prompt, completion))
            for i, v in enumerate((requests, revenue, g, payouts, work, replica_s)):
                total[i] += v
        out.append(HourPoint(since, TOTAL, int(total[0]), int(total[1]), int(total[2]), int(total[3]),
                             int(total[1] - total[3] - total[2]), total[4] / total[5] if total[5] else None,
                             total[5] / (until - since) * 1e6, 0, 0))
    return out


def _break_even(run: SimRun, totals: list[DayModelRow], mean_prompt: float,
                mean_completion: float) -> list[BreakEven]:
    """Per model and kind of host: at what utilization one replica pays for itself, at the mean price
    per token the run charged for the model (its list price when it sold nothing)."""
    catalogue = run.catalogue
    by_model = {r.model: r for r in totals}
    groups: dict[tuple[str, str, int, str, int], set[str]] = {}
    for host_id, model in run.host_model.items():
        plan = run.host_info.get(host_id)
        if plan is None:
            continue
        gpu, count, provider, cost = plan
        groups.setdefault((model, gpu, count, provider, cost), set()).add(host_id)
    out = []
    for (model, gpu, count, provider, cost), host_ids in sorted(groups.items()):
        entry, card = catalogue.model_by_id[model], catalogue.gpu_by_id[gpu]
        cap = replica_capacity(entry, card, count)
        if cap is None:
            continue
        row = by_model.get(model)
        tokens_full = cap.tokens_per_s(mean_prompt, mean_completion)
        if row is not None and row.tokens:
            per_token = row.revenue_nano / row.tokens
        else:
            per_token = (mean_prompt * entry.price.prompt + mean_completion * entry.price.completion) / (
                (mean_prompt + mean_completion) * 1_000_000)
        revenue_full_s = tokens_full * per_token
        util = run.host_utilization(host_ids)
        out.append(BreakEven(model, gpu, card.name, count, provider, cost, round(tokens_full, 1),
                             round(revenue_full_s * 3600), break_even_utilization(cost, revenue_full_s), util))
    return out
