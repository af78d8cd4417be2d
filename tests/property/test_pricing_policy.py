"""Property tests of the pricing policy (backend/pricing/policy.py), a pure function: whatever the
load, hour, range, parameters and previous price, the price stays in its range, moves at most one
step, rises with utilization and demand, falls with capacity, settles and then stays, and is the
same for the same inputs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.metrics.load import ModelLoad
from backend.pricing.policy import Bounds, Prices, next_prices
from backend.settings import PricingSettings

NANO_MAX = 10**13  # backend.money.MAX_PRICE_NANO


@st.composite
def bounds(draw) -> Bounds:
    floor = draw(st.integers(0, 10**11))
    return Bounds(floor, floor + draw(st.integers(0, 10**11)))


params = st.builds(
    PricingSettings,
    target_utilization=st.floats(0.05, 0.95),
    utilization_weight=st.floats(0, 1),
    sensitivity=st.floats(0.01, 5),
    base_position=st.floats(0, 1),
    peak_hours=st.lists(st.integers(0, 23), max_size=24),
    peak_premium=st.floats(0, 1),
    max_step_pct=st.floats(1, 100),
    hysteresis_pct=st.floats(0, 20),
)
utilization = st.one_of(st.none(), st.floats(0, 3))
demand = st.floats(0, 10**5)
capacity = st.one_of(st.none(), st.floats(0.1, 10**5))
price = st.integers(0, 3 * 10**11)


def _load(u: float | None, demand_tps: float, capacity_tps: float | None, replicas: int = 1) -> ModelLoad:
    return ModelLoad("m", 300.0, 5, replicas, u, 0.0, demand_tps, capacity_tps)


def _next(load: ModelLoad, hour: int, pb: Bounds, cb: Bounds, prev: Prices, p: PricingSettings):
    return next_prices(load, hour_utc=hour, prompt=pb, completion=cb, prev=prev, params=p)


def _sides(prices: Prices) -> tuple[int, int]:
    return prices.prompt, prices.completion


@settings(max_examples=300, deadline=None)
@given(params, bounds(), bounds(), utilization, demand, capacity, st.integers(0, 23), price, price)
def test_within_range_one_step_at_most_and_the_factors_add_up(p, pb, cb, u, d, c, hour, pp, cp):
    prev = Prices(pp, cp)
    dec = _next(_load(u, d, c), hour, pb, cb, prev, p)
    for new, old, b, side in ((dec.prices.prompt, pp, pb, 0), (dec.prices.completion, cp, cb, 1)):
        assert b.floor <= new <= b.ceiling
        if b.floor <= old <= b.ceiling:  # outside it (the operator narrowed it), it is brought in at once
            assert abs(new - old) <= max(1, old * p.max_step_pct / 100)
        deltas = [(f.prompt_delta_nano, f.completion_delta_nano)[side] for f in dec.factors]
        assert sum(deltas) == new - old
    assert {f.name for f in dec.factors} == {"base", "utilization", "demand", "peak", "range", "step_limit",
                                             "hysteresis"}
    assert dec.explanation


@settings(max_examples=300, deadline=None)
@given(params, bounds(), bounds(), st.floats(0, 3), st.floats(0, 3), demand, capacity, st.integers(0, 23),
       price, price)
def test_monotone_in_utilization(p, pb, cb, u1, u2, d, c, hour, pp, cp):
    lo, hi = sorted((u1, u2))
    prev = Prices(pp, cp)
    a, b = _next(_load(lo, d, c), hour, pb, cb, prev, p), _next(_load(hi, d, c), hour, pb, cb, prev, p)
    assert all(x <= y for x, y in zip(_sides(a.prices), _sides(b.prices), strict=True))


@settings(max_examples=300, deadline=None)
@given(params, bounds(), bounds(), utilization, demand, demand, st.floats(0.1, 10**5), st.integers(0, 23),
       price, price)
def test_monotone_in_demand(p, pb, cb, u, d1, d2, c, hour, pp, cp):
    lo, hi = sorted((d1, d2))
    prev = Prices(pp, cp)
    a, b = _next(_load(u, lo, c), hour, pb, cb, prev, p), _next(_load(u, hi, c), hour, pb, cb, prev, p)
    assert all(x <= y for x, y in zip(_sides(a.prices), _sides(b.prices), strict=True))


@settings(max_examples=300, deadline=None)
@given(params, bounds(), bounds(), utilization, demand, st.floats(0.1, 10**5), st.floats(0.1, 10**5),
       st.integers(0, 23), price, price)
def test_more_supply_never_raises_the_price(p, pb, cb, u, d, c1, c2, hour, pp, cp):
    lo, hi = sorted((c1, c2))
    prev = Prices(pp, cp)
    scarce = _next(_load(u, d, lo, replicas=1), hour, pb, cb, prev, p)
    ample = _next(_load(u, d, hi, replicas=2), hour, pb, cb, prev, p)
    assert all(x >= y for x, y in zip(_sides(scarce.prices), _sides(ample.prices), strict=True))


@settings(max_examples=200, deadline=None)
@given(params, bounds(), bounds(), utilization, demand, capacity, st.integers(0, 23), price, price)
def test_unchanged_inputs_settle_and_then_never_move(p, pb, cb, u, d, c, hour, pp, cp):
    load = _load(u, d, c)
    prev = Prices(pp, cp)
    for _ in range(20_000):
        new = _next(load, hour, pb, cb, prev, p).prices
        if new == prev:
            break
        prev = new
    else:
        raise AssertionError(f"no fixpoint from {pp}, {cp}")
    for _ in range(3):
        again = _next(load, hour, pb, cb, prev, p)
        assert again.prices == prev and not again.changed(prev)


@settings(max_examples=200, deadline=None)
@given(params, bounds(), bounds(), utilization, demand, capacity, st.integers(0, 23), price, price)
def test_deterministic(p, pb, cb, u, d, c, hour, pp, cp):
    a = _next(_load(u, d, c), hour, pb, cb, Prices(pp, cp), p)
    b = _next(_load(u, d, c), hour, pb, cb, Prices(pp, cp), p)
    assert a == b
