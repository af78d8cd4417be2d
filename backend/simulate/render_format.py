"""Formatting and series shared by the simulation's table, CSV and charts.

Money stays integer nano-USD until it becomes text, and becomes text through Decimal (exact).
"""

from __future__ import annotations

from decimal import Decimal

from backend.money import NANO_PER_USD, format_usd
from backend.runtime.clock import from_us
from backend.simulate.result import TOTAL, HourPoint, SimResult

HOUR_US = 3_600_000_000


def usd(nano: int, places: int = 2) -> str:
    """"$1,234.57", "-$3.10": two decimals for people, the sign in front so a loss cannot be missed."""
    return format_usd(nano, places=places)


def usd_decimal(nano: int) -> str:
    """Exact decimal USD for files: "12.345678900", "-0.000000001" (no float on the way)."""
    return f"{Decimal(nano).scaleb(-9):.9f}"


def per_day(nano: int, start_us: int, end_us: int) -> int:
    """An amount over [start, end) as nano-USD per day, in integers (rounded half up)."""
    span = max(end_us - start_us, 1)
    return (2 * nano * 86_400_000_000 + span) // (2 * span)


def mean_nano(values: list[int]) -> int:
    """The mean of amounts, in integers (rounded half up)."""
    return (2 * sum(values) + len(values)) // (2 * len(values)) if values else 0


def per_mtok(nano: int) -> str:
    """A price per million tokens: "$0.35/M"; cents unless the price needs more."""
    places = 2 if nano % (NANO_PER_USD // 100) == 0 else 4
    return usd(nano, places) + "/M"


def percent(share: float | None, places: int = 1) -> str:
    return "-" if share is None else f"{share * 100:.{places}f}%"


def margin(bps: int | None) -> str:
    """Basis points as a percent with one decimal, rounded half away from zero in integers."""
    if bps is None:
        return "-"
    sign = "-" if bps < 0 else ""
    tenths = (abs(bps) + 5) // 10
    return f"{sign}{tenths // 10}.{tenths % 10}%"


def utc(at_us: int, *, seconds: bool = False) -> str:
    return from_us(at_us).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"


def utc_date(at_us: int) -> str:
    return from_us(at_us).date().isoformat()


def models_of(result: SimResult) -> list[str]:
    """The run's models in its own order (the totals list them first, the grand TOTAL last)."""
    models = [r.model for r in result.totals if r.model != TOTAL]
    for h in result.hours:  # a result without totals still names its models in its hours
        if h.model != TOTAL and h.model not in models:
            models.append(h.model)
    return models


def hour_starts(result: SimResult) -> list[int]:
    """Every hour of the run, in order (from the hours when there are any, else from start/end)."""
    starts = sorted({h.start_us for h in result.hours})
    if starts:
        return starts
    return list(range(result.start_us, max(result.end_us, result.start_us + 1), HOUR_US))


def hours_by_model(result: SimResult) -> dict[str, dict[int, HourPoint]]:
    """model (TOTAL included) -> hour start -> its point."""
    out: dict[str, dict[int, HourPoint]] = {}
    for h in result.hours:
        out.setdefault(h.model, {})[h.start_us] = h
    return out


def fleet_total_hours(result: SimResult) -> dict[int, HourPoint]:
    """The whole fleet's hours: the TOTAL points, or sums of the models' when a result lacks them."""
    by_model = hours_by_model(result)
    if TOTAL in by_model:
        return by_model[TOTAL]
    out: dict[int, HourPoint] = {}
    for start in hour_starts(result):
        pts = [m[start] for m in by_model.values() if start in m]
        if not pts:
            continue
        profit = sum(p.profit_nano for p in pts)
        out[start] = HourPoint(start, TOTAL, sum(p.requests for p in pts), sum(p.revenue_nano for p in pts),
                               sum(p.gpu_cost_nano for p in pts), sum(p.payouts_nano for p in pts), profit,
                               None, sum(p.replicas for p in pts), 0, 0)
    return out


def plan_line(result: SimResult) -> str:
    """One line that says what was simulated: days, fleet, models, demand, seed."""
    plan = result.plan
    fleet = ", ".join(f"{e.count}x {e.gpu} ({e.provider})" + (f" for {e.model}" if e.model else "")
                      for e in plan.fleet) or "default fleet"
    days = (result.end_us - result.start_us) / 86_400_000_000 if result.end_us > result.start_us else plan.days
    days_s = f"{days:g}"
    return (f"{days_s} day{'s' if days_s != '1' else ''} from {utc(result.start_us)}; fleet {fleet}; "
            f"models {', '.join(models_of(result)) or '-'}; demand {plan.demand}; seed {plan.seed}")
