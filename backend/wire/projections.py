"""Live projections on the admin API (GET /admin/projections): today's and this month's revenue,
host payouts, GPU cost and profit so far (the ledger's and the GPU meter's figures) and projected to
the end of the period; each served model's break-even utilization on its current hosts beside its
utilization now; progress against the daily profit target. Money is integer nano-USD."""

from __future__ import annotations

from typing import Literal

import msgspec


class PeriodProjectionOut(msgspec.Struct):
    """One UTC period (the day, or the calendar month) so far and projected to its end.

    projected = so far + rate x left_s. The rate's basis:
    - "last_hour" (the day): revenue and payouts over the last hour observed, GPU cost at the
      connected hosts' rate now. "If the rest of the day goes like the last hour."
    - "period_average" (the month): the month so far divided by the time of it observed, for all
      three: a month's rest holds whole days and nights, which one hour does not stand for.
    observed_s is how much time the rate rests on (the backend and its ledger may be younger than
    the window): a projection made from a few minutes is a guess, and the console marks it so."""

    period: Literal["day", "month"]
    since_us: int  # the period's start (UTC)
    until_us: int  # its end (exclusive)
    now_us: int
    revenue_nano: int  # so far: charged to clients (the ledger's usage events)
    payouts_nano: int  # so far: owed to community hosts (their share of those charges)
    gpu_cost_nano: int  # so far: the GPU cost meter (hosts' connected time at their rate)
    profit_nano: int  # revenue - payouts - GPU cost - fees
    projected_revenue_nano: int
    projected_payouts_nano: int
    projected_gpu_cost_nano: int
    projected_profit_nano: int
    basis: Literal["last_hour", "period_average"]
    rate_since_us: int  # where the rate's window begins: not before anything was observed
    rate_window_s: float  # the window the basis asks for (an hour; the month so far)
    observed_s: float  # seconds of it observed: what the rate rests on
    left_s: float  # seconds left in the period
    fees_nano: int = 0  # so far: owed to OpenRouter on the traffic it brought (its fee)
    projected_fees_nano: int = 0  # on the revenue's basis


class ModelBreakEvenOut(msgspec.Struct):
    """A served model on the hosts serving it now: the utilization at which what it earns (net of
    community hosts' shares) pays its share of their GPU cost, beside its utilization now."""

    model: str
    replicas: int  # on connected hosts (draining included: they cost until removed)
    hosts: list[str]  # host ids
    gpu_cost_per_h_nano: int  # its share of its hosts' hourly cost (a host's cost split evenly among its models)
    prompt_per_mtok_nano: int  # its price now
    completion_per_mtok_nano: int
    mean_prompt_tokens: float  # the request mix the capacity is measured in
    mean_completion_tokens: float
    mix_from: Literal["today", "default"]  # today's ledger, or 400/200 when it served nothing today
    revenue_per_h_at_full_nano: int | None  # what its replicas would keep per hour at utilization 1
    break_even_utilization: float | None  # None: unknown (see note) or nothing earned at full
    utilization: float | None  # now: mean engine load of its routable replicas; None: none reports it
    note: str  # why a figure is unknown; "" when all are known


class ProjectionsOut(msgspec.Struct):
    now_us: int
    day: PeriodProjectionOut
    month: PeriodProjectionOut
    profit_target_daily_nano: int  # 0: no target set
    target_progress: float | None  # today's profit so far / the target; None: no target
    target_projected: float | None  # today's projected profit / the target; None: no target
    models: list[ModelBreakEvenOut]
