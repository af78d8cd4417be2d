"""The plan simulated (backend/simulate on the production services) and the estimate screen:
per day, from the run's own ledger; money stays integer nano-USD until it is printed."""

from __future__ import annotations

import textwrap
from fractions import Fraction

from backend.catalogue import Catalogue
from backend.cli_quickstart.answers import Answers
from backend.cli_quickstart.questions import Terminal
from backend.money import format_usd, parse_usd
from backend.settings import Settings
from backend.simulate.plan import SimPlan, parse_fleet
from backend.simulate.result import SimResult


def plan_for(answers: Answers, cat: Catalogue, days: float) -> SimPlan:
    return SimPlan(days=days, models=answers.models, fleet=parse_fleet(answers.fleet, cat),
                   autoscale=answers.autoscale, dynamic_pricing=answers.policy == "dynamic",
                   pin=answers.pin if answers.policy == "pinned" else None)


def settings_for(settings: Settings, answers: Answers) -> Settings:
    """The settings the simulation runs with: the operator's, with the answers in them."""
    return settings.model_copy(update={
        "profit_target_daily_usd": answers.profit_target_usd,
        "pricing": settings.pricing.model_copy(update={"enabled": answers.policy == "dynamic"}),
        "autoscaler": settings.autoscaler.model_copy(update={"enabled": answers.autoscale,
                                                             "budget_per_hour_usd": answers.budget_usd}),
    })


def simulate_plan(answers: Answers, cat: Catalogue, settings: Settings, days: float, term: Terminal) -> SimResult:
    from backend.simulate.run import run_simulation  # the services: loaded only when a run starts

    shown = -1

    def progress(share: float) -> None:
        nonlocal shown
        pct = int(share * 100)
        if pct != shown:
            shown = pct
            term.progress(f"  simulated {pct:3d} %")

    return run_simulation(plan_for(answers, cat, days), settings_for(settings, answers), cat, progress=progress)


def per_day(nano: int, days: float) -> int:
    return round(Fraction(nano) / Fraction(days))


def days_text(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def estimate_lines(result: SimResult, answers: Answers) -> list[str]:
    """The estimate screen: per day, from the run's own ledger (money exact, never through float)."""
    days = result.plan.days
    total = result.grand_total
    usd = lambda nano: format_usd(per_day(nano, days), places=2)  # noqa: E731
    profit = per_day(total.profit_nano, days)
    lines = [f"Expected daily profit: {format_usd(profit, places=2)}  (revenue {usd(total.revenue_nano)} - "
             f"GPU cost {usd(total.gpu_cost_nano)}"
             + (f" - host payouts {usd(total.payouts_nano)}" if total.payouts_nano else "") + ")",
             f"  from {days_text(days)} simulated with this plan"]
    lines += [textwrap.fill(n, width=78, initial_indent="  ", subsequent_indent="    ") for n in result.notes]
    width = max(len(r.model) for r in result.totals)
    lines.append("")
    lines.append(f"  {'per day':<{width}} {'requests':>9} {'util':>4} {'revenue':>9} {'GPU cost':>9} {'profit':>9}")
    for r in result.totals:
        util = "-" if r.utilization is None else f"{r.utilization:.0%}"
        lines.append(f"  {r.model:<{width}} {round(r.requests / days):>9,} {util:>4} {usd(r.revenue_nano):>9} "
                     f"{usd(r.gpu_cost_nano):>9} {usd(r.profit_nano):>9}")
    if total.margin_bps is not None:
        lines.append(f"  margin {total.margin_bps / 100:.0f} % of revenue")
    target = parse_usd(answers.profit_target_usd)
    if target:
        gap = profit - target
        lines.append(f"  profit target {format_usd(target, places=2)}/day: "
                     + (f"met, {format_usd(gap, places=2)} above it" if gap >= 0
                        else f"short by {format_usd(-gap, places=2)}"))
    if result.break_even:
        lines.append("")
        lines.append("Break-even utilization (the share of a replica's capacity that pays its GPU):")
        for b in result.break_even:
            be = "never (earns nothing at full load)" if b.break_even is None else f"{b.break_even:.0%}"
            reached = "" if b.utilization is None else f" (the run: {b.utilization:.0%})"
            lines.append(f"  {b.model}, {b.gpu_count}x {b.gpu} {b.provider} "
                         f"{format_usd(b.cost_per_hour_nano, places=2)}/h: {be}{reached}")
    acted = sum(1 for d in result.decisions if d.kind.startswith("autoscale."))
    if acted:
        lines.append(f"  the autoscaler acted {acted} times (`tokenmill simulate` lists each decision)")
    return lines
