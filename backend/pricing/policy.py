"""The pricing policy: one pure function from a model's load, the hour and the previous price to the
next price, with the part each factor played. No I/O, no clock: the engine (engine.py) reads the
load, the time and the database and hands them in, so the policy is tested on tables and properties.

Per side (prompt, completion), in nano-USD per million tokens, each step an integer price:

1. base: the price at `base_position` of the range [floor, ceiling] (0.4: just under the midpoint).
   The catalogue's list prices sit there, so a model at its target load is at its list price.
2. load: the position moves by `sensitivity` x (load - target_utilization) of the range, load being
   ModelLoad.combined(utilization_weight) = w x utilization + (1 - w) x demand / capacity. The move
   is split into the utilization's part (w x (utilization - target)) and the demand's part
   ((1 - w) x (demand ratio - target)); either alone takes the whole move when the other is unknown.
   More replicas = more capacity = a lower demand ratio = a lower price.
3. range: the price is held within [floor, ceiling].
4. peak: during `peak_hours` (UTC) `peak_premium` is added (0.10 = +10 %), then held under the ceiling.
   The result is the target: it depends on the inputs alone, never on the previous price.
5. hysteresis: a target less than `hysteresis_pct` away from the previous price leaves it as is
   (unless the target is the floor or the ceiling, which are reached); a move against the direction
   of the last one (`last_move`) needs REVERSAL_FACTOR times that. A trend still moves the price
   step by step, but noise in the load (a minute's Poisson arrivals, averaged over the window) no
   longer walks it up and down: `tokenmill simulate` showed a small model's price reversing every
   few minutes at a plain 1 % band (~700 changes a day; 71 with 3 % and the reversal rule).
6. step limit: otherwise the price moves towards the target by at most `max_step_pct` of the
   previous price (at least 1 nano-USD, so a price of 0 can move).
7. a previous price outside the range (the operator narrowed it) is brought inside at once.

So with unchanged inputs the price walks to the target and then stays there; every step is monotone
(non-decreasing in utilization and demand, non-increasing in capacity) and so is the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend.metrics.load import ModelLoad
from backend.money import format_usd
from backend.settings import PricingSettings
from backend.wire.pricing import PriceFactorOut


@dataclass(frozen=True, slots=True)
class Bounds:
    """One side's range, nano-USD per million tokens."""

    floor: int
    ceiling: int


@dataclass(frozen=True, slots=True)
class Prices:
    prompt: int  # nano-USD per million tokens
    completion: int


@dataclass(frozen=True, slots=True)
class PriceDecision:
    prices: Prices
    target: Prices  # where the price is heading (before hysteresis and the step limit)
    load: float  # the combined load priced from
    peak: bool
    factors: list[PriceFactorOut]  # each factor's delta; per side they add up to new - previous
    explanation: str  # one line for people

    def changed(self, prev: Prices) -> bool:
        return self.prices != prev


def hour_of(at_us: int) -> int:
    """The UTC hour (0-23) of an instant in µs since the epoch."""
    return (at_us // 3_600_000_000) % 24


@dataclass(frozen=True, slots=True)
class _Side:
    """One side's price after each step; consecutive differences are the factors' deltas."""

    base: int
    utilization: int
    demand: int
    ranged: int
    peak: int
    target: int
    held: int  # after hysteresis (the previous price when held, else the target)
    limited: int  # after the step limit
    final: int  # inside the range


REVERSAL_FACTOR = 3  # a move back against the last one needs this many times the hysteresis


def _side(prev: int, b: Bounds, util_dev: float, demand_dev: float, peak: bool, p: PricingSettings,
          last_move: int = 0) -> _Side:
    span = b.ceiling - b.floor
    base = b.floor + round(p.base_position * span)
    util = base + round(p.sensitivity * util_dev * span)
    demand = util + round(p.sensitivity * demand_dev * span)
    ranged = min(max(demand, b.floor), b.ceiling)
    peaked = ranged + round(ranged * p.peak_premium) if peak else ranged
    target = min(peaked, b.ceiling)
    band = p.hysteresis_pct * (REVERSAL_FACTOR if (target - prev) * last_move < 0 else 1)
    # A target at the floor or the ceiling is reached: an idle model sinks to its floor, not to near it.
    if b.floor < target < b.ceiling and abs(target - prev) * 100 < band * prev:
        held = limited = prev
    else:
        step = max(1, math.floor(prev * p.max_step_pct / 100))
        held = target
        limited = min(max(target, prev - step), prev + step)
    final = min(max(limited, b.floor), b.ceiling)
    return _Side(base, util, demand, ranged, peaked, target, held, limited, final)


def _pct(new: int, old: int) -> str:
    return f"{(new - old) * 100 / old:+.1f} %" if old else "new"


def next_prices(load: ModelLoad, *, hour_utc: int, prompt: Bounds, completion: Bounds, prev: Prices,
                params: PricingSettings, last_move: int = 0) -> PriceDecision:
    """The next prompt and completion prices of one model, and why (see the module's docstring).
    `last_move`: the sign of the model's last price change (+1 up, -1 down, 0 none known)."""
    p = params
    u, d = load.utilization, load.demand_ratio
    w = p.utilization_weight
    t = p.target_utilization
    # Each signal's weight: the setting's when both are known, all of it for the one known.
    wu, wd = (w, 1 - w) if u is not None and d is not None else (0.0 if u is None else 1.0, 0.0 if d is None else 1.0)
    if u is None and d is None:  # no signal at all: no load, all of it put on utilization
        util_dev, demand_dev = -t, 0.0
    else:
        util_dev = wu * ((u or 0.0) - t)
        demand_dev = wd * ((d or 0.0) - t)
    combined = load.combined(w)
    peak = hour_utc in p.peak_hours
    ps = _side(prev.prompt, prompt, util_dev, demand_dev, peak, p, last_move)
    cs = _side(prev.completion, completion, util_dev, demand_dev, peak, p, last_move)

    def factor(name, detail: str, attr_new: str, attr_old: str | None) -> PriceFactorOut:
        def delta(s: _Side, old_prev: int) -> int:
            old = old_prev if attr_old is None else getattr(s, attr_old)
            return getattr(s, attr_new) - old

        return PriceFactorOut(name, detail, delta(ps, prev.prompt), delta(cs, prev.completion))

    demand_text = (f"demand {load.demand_tps:.1f} tok/s / capacity {load.capacity_tps:.1f} tok/s = {d:.2f}"
                   if d is not None and load.capacity_tps is not None else "demand / capacity unknown")
    util_text = f"engine utilization {u:.2f}" if u is not None else "engine utilization unknown"
    factors = [
        factor("base", f"{p.base_position:.2f} of the range {format_usd(prompt.floor, places=4)}-"
               f"{format_usd(prompt.ceiling, places=4)} (prompt) at target load {t:.2f}", "base", None),
        factor("utilization", f"{util_text} vs target {t:.2f} (weight {wu:.2f})",
               "utilization", "base"),
        factor("demand", f"{demand_text} vs target {t:.2f} (weight {wd:.2f})",
               "demand", "utilization"),
        factor("peak", f"hour {hour_utc:02d} UTC is peak: +{p.peak_premium * 100:.0f} %" if peak
               else f"hour {hour_utc:02d} UTC is off-peak", "peak", "ranged"),
        # Both clamps: the price into [floor, ceiling] before the premium, under the ceiling after it,
        # and a previous price outside the range brought inside.
        PriceFactorOut("range", "held within the range",
                       (ps.ranged - ps.demand) + (ps.target - ps.peak) + (ps.final - ps.limited),
                       (cs.ranged - cs.demand) + (cs.target - cs.peak) + (cs.final - cs.limited)),
        factor("step_limit", f"at most {p.max_step_pct:g} % per interval", "limited", "held"),
        factor("hysteresis", f"a move under {p.hysteresis_pct:g} % is not made"
               + (f" ({p.hysteresis_pct * REVERSAL_FACTOR:g} % back against the last one)" if last_move else ""),
               "held", "target"),
    ]
    new = Prices(ps.final, cs.final)
    why = f"load {combined:.2f} vs target {t:.2f} ({util_text}; {demand_text})"
    if peak:
        why += f", peak hour (+{p.peak_premium * 100:.0f} %)"
    moves = []
    for side, s, old in (("prompt", ps, prev.prompt), ("completion", cs, prev.completion)):
        if s.final != old:
            new_usd = format_usd(s.final, places=4)
            moves.append(f"{side} {format_usd(old, places=4)} -> {new_usd} ({_pct(s.final, old)})")
    if moves:
        why += ": " + ", ".join(moves)
        if (ps.limited != ps.held) or (cs.limited != cs.held):
            why += f", step-limited towards {format_usd(ps.target, places=4)} / {format_usd(cs.target, places=4)}"
    else:
        why += ": unchanged"
    return PriceDecision(new, Prices(ps.target, cs.target), combined, peak, factors, why)
