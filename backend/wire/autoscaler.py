"""The autoscaler on the admin API: per model, desired against actual replicas, the next decision,
the last ones with their reasons; the operator's min, max and on/off per model."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

ScalingAction = Literal[
    "scale_up",  # renting (or resuming) a replica
    "scale_down",  # draining, then releasing a replica
    "hold",  # load within thresholds, or at min/max
    "wait_up",  # wants more, not yet for upscale_delay decisions in a row
    "wait_down",  # wants fewer, not yet for downscale_delay decisions in a row
    "blocked",  # wants more but cannot: budget, no offer, a host key to confirm, a job failed
    "off",  # the autoscaler is off (for this model or altogether)
]


class ScalingDecisionOut(msgspec.Struct):
    at_us: int
    model: str
    action: ScalingAction
    reason: str  # "llama-3.1-8b: utilization 0.86 > 0.80 for 5 min; rent vast RTX 4090 at $0.31/h, ..."
    desired: int
    actual: int
    host_id: str | None = None  # the replica's host resumed, rented (its job's host) or released
    job_id: str | None = None  # the provisioning or teardown job it started


class ModelScalingOut(msgspec.Struct):
    model: str
    enabled: bool  # for this model (and the autoscaler is on)
    min_replicas: int
    max_replicas: int
    limits_overridden: bool  # the operator set this model's min or max
    actual: int  # routable replicas now
    pending: int  # replicas on their way: provisioning jobs running, hosts resuming
    draining: int  # replicas the autoscaler is releasing
    desired: int
    load: float | None
    utilization: float | None
    waiting_per_replica: float
    up_streak: int  # consecutive decisions that wanted more
    down_streak: int
    next_decision_us: int | None
    next_action: str  # what the next decision will do if the load stays as it is, in words
    last_decision: ScalingDecisionOut | None
    next: ScalingAction = "hold"  # that next decision's action
    model_enabled: bool = True  # this model's own switch (`enabled` is false too while the autoscaler is off)


class AutoscalerOut(msgspec.Struct):
    enabled: bool
    interval_s: float
    upper_threshold: float
    lower_threshold: float
    target_utilization: float
    upscale_delay: int
    downscale_delay: int
    budget_per_hour_nano: int
    spend_per_hour_nano: int  # what the rented hosts (and those being rented) cost now
    host_keys: Literal["ask", "trust_new_instance"]
    models: list[ModelScalingOut]
    recent: list[ScalingDecisionOut]  # the latest decisions that did something, newest first
    min_profit_per_hour_nano: int | None = None  # a rental must be expected to earn this; None: load alone


class SetModelScaling(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """PUT /admin/models/{id}/scaling. A field left out is left as it is; min/max null: the
    [autoscaler] defaults again."""

    enabled: bool | UnsetType = UNSET
    min_replicas: int | UnsetType | None = UNSET
    max_replicas: int | UnsetType | None = UNSET
