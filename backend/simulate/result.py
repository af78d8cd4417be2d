"""What a simulation run found: plain data, read from the run's own ledger and GPU meter.

Money is integer nano-USD; times are UTC microseconds; utilization is the share of the replicas'
full-batch capacity the demand used (backend/catalogue/capacity.py), over the hours they served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.simulate.plan import SimPlan

TOTAL = "total"  # the `day` (or `model`) of a row that sums the others


@dataclass(frozen=True, slots=True)
class DayModelRow:
    day: str  # "2026-12-05" (UTC), or TOTAL for the whole run
    model: str  # catalogue id, or TOTAL for every model
    requests: int
    failed: int  # timed out in a queue or found no replica: not charged
    prompt_tokens: int
    completion_tokens: int
    utilization: float | None  # None: no replica served that day
    replica_hours: float  # hours of routable replicas that day
    revenue_nano: int
    gpu_cost_nano: int
    payouts_nano: int  # community hosts' shares
    profit_nano: int  # revenue - payouts - GPU cost
    margin_bps: int | None  # profit over revenue, basis points; None without revenue

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class BreakEven:
    """At what utilization a replica of `model` on `gpu` pays for itself, at the prices the run charged."""

    model: str
    gpu: str  # catalogue GPU id
    gpu_name: str
    gpu_count: int
    provider: str  # whose offer the hosts were rented at ("vast", "runpod", "lambda", "owned", "community")
    cost_per_hour_nano: int
    tokens_per_s_full: float  # prompt + completion tokens/s at utilization 1 with the run's mix
    revenue_per_hour_full_nano: int  # at utilization 1, at the mean price the run charged
    break_even: float | None  # utilization; None when a full replica earns nothing
    utilization: float | None  # what the run reached on those hosts


@dataclass(frozen=True, slots=True)
class Decision:
    at_us: int
    kind: str  # the event's kind: "autoscale.scale_up", "autoscale.scale_down", ... "host.provisioned"
    subject: str  # the model (or host) it is about
    message: str  # the reason, as the event said it


@dataclass(frozen=True, slots=True)
class HourPoint:
    """One model's hour (model TOTAL: the whole fleet's; its prices are 0)."""

    start_us: int
    model: str
    requests: int
    revenue_nano: int
    gpu_cost_nano: int
    payouts_nano: int
    profit_nano: int
    utilization: float | None
    replicas: float  # mean routable replicas over the hour
    price_prompt_per_mtok: int  # at the end of the hour
    price_completion_per_mtok: int


@dataclass
class SimResult:
    plan: SimPlan
    start_us: int
    end_us: int
    days: list[DayModelRow]  # per day and model, then per day TOTAL
    totals: list[DayModelRow]  # per model over the run (day TOTAL), then the grand TOTAL last
    break_even: list[BreakEven]
    decisions: list[Decision]
    hours: list[HourPoint]
    price_changes: int
    mean_prompt_tokens: float
    mean_completion_tokens: float
    wall_s: float = 0.0
    simulated_requests: int = 0
    notes: list[str] = field(default_factory=list)  # what the reader should know (assumed demand, ...)

    @property
    def grand_total(self) -> DayModelRow:
        return self.totals[-1]
