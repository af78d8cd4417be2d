"""The autoscaler's policy: one model's next step from its load, as a pure function (no I/O, no clock).

    d = decide(view, streak, thresholds, supply)

Desired replicas are those that would bring the load to `target_utilization`:
ceil(actual x load / target), within the model's [min, max]. Only the thresholds make it move
(the band between them is the hysteresis): above `upper_threshold`, or with more than
`overload_waiting` requests waiting per replica, at least one more than now; under
`lower_threshold`, at least one fewer; in between, as many as now.

A want must hold for `upscale_delay` (up) or `downscale_delay` (down) consecutive decisions
before it is acted on (SkyServe's scheme: counters of decisions in a row, reset by any decision
that does not want the same way, and by acting). Below the model's minimum or above its maximum
it acts at once. Replicas on their way (provisioning jobs) count as there for "wants more", so
one need never rents twice; each decision moves one replica at most, so a square wave of demand
shorter than the delays never makes it act.

Scaling up resumes a host the autoscaler drained earlier (free) or rents the cheapest fitting
offer, unless its price would take the fleet's spend over the budget, or (when the operator set
`min_expected_profit_per_hour_usd`) the offer is not expected to earn that much over its price:
then the decision is "blocked", with the reason. `supply` is looked up only when a decision would scale up (offers
are I/O): called with supply=None, such a decision comes back with `needs_supply` set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from backend.money import format_usd
from backend.settings import AutoscalerSettings
from backend.wire.autoscaler import ScalingAction

Want = Literal["up", "down"] | None


@dataclass(frozen=True, slots=True)
class Streak:
    """Consecutive decisions that wanted more (up) or fewer (down) replicas."""

    up: int = 0
    down: int = 0


@dataclass(frozen=True, slots=True)
class Thresholds:
    target: float = 0.60
    upper: float = 0.80
    lower: float = 0.30
    overload_waiting: float = 2.0
    upscale_delay: int = 3
    downscale_delay: int = 10
    interval_s: float = 60.0  # only to say "for 3 decisions (3 min)"

    @classmethod
    def of(cls, s: AutoscalerSettings) -> Thresholds:
        return cls(s.target_utilization, s.upper_threshold, s.lower_threshold, s.overload_waiting,
                   s.upscale_delay, s.downscale_delay, s.interval_s)


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model as a decision sees it."""

    model: str
    load: float | None  # combined load (or utilization) over the window; None: no figures yet
    waiting_per_replica: float
    actual: int  # routable replicas
    pending: int = 0  # replicas on their way (provisioning jobs)
    min_replicas: int = 1
    max_replicas: int = 4
    enabled: bool = True  # this model's scaling and the autoscaler are on
    off_reason: str = "the autoscaler is off"  # why not, when not enabled
    signal: str = "load"  # what `load` is called in reasons: "load" or "utilization"


@dataclass(frozen=True, slots=True)
class OfferChoice:
    """The cheapest fitting offer, as much of it as a decision needs."""

    provider: str  # its label, e.g. "Vast.ai"
    gpu_name: str
    price_per_hour_nano: int
    expected_profit_per_h_nano: int | None  # None: no demand to say


@dataclass(frozen=True, slots=True)
class Supply:
    """Where one more replica would come from, and what the fleet may still spend."""

    budget_per_hour_nano: int
    spend_per_hour_nano: int  # rented hosts and rentals under way, now
    resumable: str | None = None  # a host the autoscaler drained that serves the model again for free
    offer: OfferChoice | None = None
    no_offer: str = "no offer fits the model"  # why there is no offer
    min_profit_per_hour_nano: int | None = None  # rent only if the offer is expected to earn this; None: any


@dataclass(frozen=True, slots=True)
class Decision:
    action: ScalingAction
    desired: int
    reason: str
    streak: Streak  # the state for the next decision
    want: Want = None
    wanting: Streak = Streak()  # the streak before acting reset it (kept when the action cannot happen)
    resume: str | None = None  # scale_up: the drained host to resume; None: rent `offer`
    offer: OfferChoice | None = None
    needs_supply: bool = False  # scale_up decided without supply: look it up and decide again


def _clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(n, hi))


def _minutes(decisions: int, interval_s: float) -> str:
    s = decisions * interval_s
    if s < 120:
        return f"{s:g} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def desired(v: ModelView, th: Thresholds) -> tuple[int, Want, bool, str]:
    """The replicas wanted now, which way that moves the model, whether at once (outside its
    [min, max]), and why (in words, without the model's name)."""
    lo, hi = v.min_replicas, max(v.max_replicas, v.min_replicas)
    n, have = v.actual, v.actual + v.pending
    if have < lo:
        return lo, "up", True, f"{have} replicas, below its minimum of {lo}"
    if n > hi:
        return hi, "down", True, f"{n} replicas, above its maximum of {hi}"
    if v.load is None:
        return _clamp(n, lo, hi), None, False, "no load figures yet"
    load = v.load
    fit = math.ceil(n * load / th.target - 1e-9)  # the replicas that would bring it to the target
    what = f"{v.signal} {load:.2f}"
    on_way = f", {v.pending} on the way" if v.pending else ""
    if load > th.upper or v.waiting_per_replica > th.overload_waiting:
        why = (f"{what} > {th.upper:.2f}" if load > th.upper
               else f"{v.waiting_per_replica:.1f} waiting per replica > {th.overload_waiting:g}")
        want = _clamp(max(fit, n + 1), lo, hi)
        if want <= have:  # enough on the way, or at the maximum
            limit = f" (its maximum is {hi})" if have >= hi else ""
            return want, None, False, f"{why}; {n} replicas{on_way}{limit}"
        return want, "up", False, why
    if load < th.lower:
        why = f"{what} < {th.lower:.2f}"
        want = _clamp(min(fit, n - 1), lo, hi)
        if want >= n or v.pending:  # at the minimum, or renting: never release while a replica comes
            limit = f" (its minimum is {lo})" if n <= lo else ""
            return want, None, False, f"{why}; {n} replicas{on_way}{limit}"
        return want, "down", False, why
    return _clamp(n, lo, hi), None, False, f"{what} within {th.lower:.2f}..{th.upper:.2f}"


def decide(v: ModelView, streak: Streak, th: Thresholds, supply: Supply | None) -> Decision:
    want_n, want, urgent, why = desired(v, th)
    if want == "up":
        now = Streak(up=streak.up + 1)
    elif want == "down":
        now = Streak(down=streak.down + 1)
    else:
        now = Streak()
    head = f"{v.model}: {why}"
    if want is None:
        return Decision("hold" if v.enabled else "off", want_n, head if v.enabled else f"{head} ({v.off_reason})",
                        now, None, now)
    count, delay = (now.up, th.upscale_delay) if want == "up" else (now.down, th.downscale_delay)
    if not urgent:
        head += f" for {count} decision{'s' if count != 1 else ''} ({_minutes(count, th.interval_s)})"
    if not v.enabled:
        return Decision("off", want_n, f"{head}; would scale {want}, but {v.off_reason}", now, want, now)
    if not urgent and count < delay:
        action: ScalingAction = "wait_up" if want == "up" else "wait_down"
        return Decision(action, want_n, f"{head}; {delay - count} more before scaling {want}", now, want, now)
    if want == "down":
        return Decision("scale_down", want_n, f"{head}; release a replica", Streak(), want, now)
    if supply is None:
        return Decision("scale_up", want_n, head, Streak(), want, now, needs_supply=True)
    return _afford(want_n, head, now, supply, urgent)


def _afford(want_n: int, head: str, wanting: Streak, supply: Supply, urgent: bool) -> Decision:
    """Scale up from `supply`: a drained host for free, else the offer if the budget allows and, unless
    the model is below its minimum (which the operator asked for whatever it earns), if it is expected
    to earn the minimum profit."""
    if supply.resumable is not None:
        return Decision("scale_up", want_n, f"{head}; resume {supply.resumable}", Streak(), "up", wanting,
                        resume=supply.resumable)
    offer = supply.offer
    if offer is None:
        return Decision("blocked", want_n, f"{head}; {supply.no_offer}", wanting, "up", wanting)
    price = format_usd(offer.price_per_hour_nano, places=2)
    rent = f"rent {offer.provider} {offer.gpu_name} at {price}/h"
    after = supply.spend_per_hour_nano + offer.price_per_hour_nano
    if after > supply.budget_per_hour_nano:
        return Decision("blocked", want_n, f"{head}; {rent} would take spend to {format_usd(after, places=2)}/h, over "
                                           f"the budget of {format_usd(supply.budget_per_hour_nano, places=2)}/h",
                        wanting, "up", wanting, offer=offer)
    expected = offer.expected_profit_per_h_nano
    profit = "unknown" if expected is None else f"{format_usd(expected, places=2)}/h"
    floor = supply.min_profit_per_hour_nano
    if floor is not None and not urgent and (expected is None or expected < floor):
        least = f"{format_usd(floor, places=2)}/h"
        why = (f"no revenue yet to expect the minimum profit of {least} from" if expected is None
               else f"expected profit {profit}, under the minimum of {least}")
        return Decision("blocked", want_n, f"{head}; {rent}: {why}", wanting, "up", wanting, offer=offer)
    return Decision("scale_up", want_n, f"{head}; {rent}, expected profit {profit}", Streak(), "up", wanting,
                    offer=offer)


def blocked(d: Decision, why: str) -> Decision:
    """`d` could not be carried out (no idle replica, the Provisioner refused...): the want stands."""
    action: ScalingAction = "blocked" if d.want == "up" else "wait_down"
    return replace(d, action=action, reason=f"{d.reason}: {why}" if d.want == "up" else f"{d.reason}; {why}",
                   streak=d.wanting, resume=None)


def next_action(d: Decision, th: Thresholds) -> str:
    """`d`, the decision the next run would make if the load stays as it is, in words."""
    if d.action == "hold":
        return "hold"
    if d.action == "off":
        return "nothing: off" if d.want is None else f"nothing: off (would scale {d.want})"
    if d.action == "wait_up":
        return f"wait ({d.wanting.up} of {th.upscale_delay} decisions wanting more)"
    if d.action == "wait_down":
        return f"wait ({d.wanting.down} of {th.downscale_delay} decisions wanting fewer)"
    if d.action == "scale_up":
        return "scale up: resume or rent one replica"
    if d.action == "scale_down":
        return "scale down: release one replica"
    return d.action
