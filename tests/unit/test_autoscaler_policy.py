"""The autoscaler's policy as a pure function on tables (backend/autoscaler/policy.py): desired
replicas, delays as consecutive decisions, min/max, the budget ceiling, and no thrashing."""

from __future__ import annotations

import pytest

from backend.autoscaler.policy import Decision, ModelView, OfferChoice, Streak, Supply, Thresholds, decide, desired
from backend.money import parse_usd

TH = Thresholds(target=0.60, upper=0.80, lower=0.30, overload_waiting=2.0, upscale_delay=3, downscale_delay=10)
MODEL = "llama-3.1-8b-instruct"
OFFER = OfferChoice("Vast.ai", "RTX 4090", parse_usd("0.31"), parse_usd("0.42"))
PLENTY = Supply(budget_per_hour_nano=parse_usd("10"), spend_per_hour_nano=0, offer=OFFER)


def view(load: float | None, actual: int = 2, **kw) -> ModelView:
    return ModelView(MODEL, load, kw.pop("waiting", 0.0), actual, **kw)


@pytest.mark.parametrize(("load", "actual", "pending", "lo", "hi", "want_n", "want"), [
    # within the band: as many as now (the band is the hysteresis)
    (0.70, 2, 0, 1, 4, 2, None),
    (0.31, 3, 0, 1, 4, 3, None),
    # above the upper threshold: what brings it to the target, at least one more
    (0.86, 2, 0, 1, 4, 3, "up"),  # ceil(2 x 0.86 / 0.6) = 3
    (1.50, 2, 0, 1, 8, 5, "up"),  # ceil(5.0) = 5
    (0.81, 1, 0, 1, 4, 2, "up"),  # ceil(1.35) = 2
    (1.50, 2, 0, 1, 4, 4, "up"),  # clamped to max
    (0.90, 4, 0, 1, 4, 4, None),  # at max: nothing to want
    # pending replicas count as there for "wants more": never rent twice for one need
    (0.86, 2, 1, 1, 4, 3, None),
    (1.50, 2, 1, 1, 8, 5, "up"),
    # under the lower threshold: towards the target, at least one fewer
    (0.10, 4, 0, 1, 4, 1, "down"),  # ceil(0.67) = 1
    (0.25, 4, 0, 1, 4, 2, "down"),  # ceil(1.67) = 2
    (0.29, 2, 0, 1, 4, 1, "down"),
    (0.10, 1, 0, 1, 4, 1, None),  # at min
    (0.10, 3, 0, 2, 4, 2, "down"),  # clamped to min
    (0.10, 3, 1, 1, 4, 1, None),  # never release while a replica is on its way
    # outside [min, max]
    (0.50, 0, 0, 1, 4, 1, "up"),
    (0.00, 1, 0, 2, 4, 2, "up"),
    (0.99, 5, 0, 1, 3, 3, "down"),
    (0.00, 0, 0, 0, 4, 0, None),  # min 0 and nothing to serve
])
def test_desired_replicas(load, actual, pending, lo, hi, want_n, want):
    n, direction, _urgent, _why = desired(view(load, actual, pending=pending, min_replicas=lo, max_replicas=hi), TH)
    assert (n, direction) == (want_n, want)


def test_queues_count_as_overload_and_unknown_load_holds():
    n, direction, _, why = desired(view(0.5, 2, waiting=3.0), TH)
    assert (n, direction) == (3, "up") and "3.0 waiting per replica > 2" in why
    assert desired(view(None, 2), TH)[:2] == (2, None)


def run(loads: list[float], *, actual: int = 2, supply: Supply = PLENTY, th: Thresholds = TH,
        follow: bool = False, **kw) -> list[Decision]:
    """Decisions over a sequence of loads; `follow`: actual replicas follow the actions taken."""
    streak, out = Streak(), []
    for load in loads:
        d = decide(view(load, actual, **kw), streak, th, supply)
        out.append(d)
        streak = d.streak
        if follow and d.action == "scale_up":
            actual += 1
        elif follow and d.action == "scale_down":
            actual -= 1
    return out


def acted(ds: list[Decision]) -> list[str]:
    return [d.action for d in ds if d.action in ("scale_up", "scale_down")]


def test_a_square_wave_of_demand_does_not_make_it_act():
    wave = [0.95 if (i // 2) % 2 == 0 else 0.1 for i in range(100)]
    ds = run(wave, follow=True)
    assert acted(ds) == []
    assert {d.action for d in ds} == {"wait_up", "wait_down"}
    assert max(d.streak.up for d in ds) == 2 and max(d.streak.down for d in ds) == 2


def test_a_sustained_rise_scales_up_after_the_delay_one_step_at_a_time():
    ds = run([0.95] * 9, follow=True, max_replicas=8)
    assert [d.action for d in ds[:3]] == ["wait_up", "wait_up", "scale_up"]
    # the counter starts again after acting: one step per upscale_delay decisions
    assert [i for i, d in enumerate(ds) if d.action == "scale_up"] == [2, 5, 8]
    d = ds[2]
    assert d.reason == ("llama-3.1-8b-instruct: load 0.95 > 0.80 for 3 decisions (3 min); rent Vast.ai RTX 4090 "
                        "at $0.31/h, expected profit $0.42/h")
    assert d.desired == 4 and d.offer == OFFER and d.resume is None


def test_a_sustained_fall_scales_down_after_the_delay():
    ds = run([0.05] * 25, actual=4, follow=True)
    downs = [i for i, d in enumerate(ds) if d.action == "scale_down"]
    assert downs == [9, 19]
    assert ds[9].reason == "llama-3.1-8b-instruct: load 0.05 < 0.30 for 10 decisions (10 min); release a replica"
    assert all(d.action == "wait_down" for i, d in enumerate(ds) if i not in downs)


def test_a_dip_within_the_delay_resets_the_count():
    ds = run([0.95, 0.95, 0.5, 0.95, 0.95, 0.95])
    assert [d.action for d in ds] == ["wait_up", "wait_up", "hold", "wait_up", "wait_up", "scale_up"]


def test_min_and_max_act_at_once_and_hold():
    d = decide(view(0.1, 0, min_replicas=2), Streak(), TH, PLENTY)
    assert d.action == "scale_up" and d.desired == 2 and "0 replicas, below its minimum of 2" in d.reason
    d = decide(view(0.1, 5, max_replicas=3), Streak(), TH, PLENTY)
    assert d.action == "scale_down" and d.desired == 3
    # a replica on its way to the minimum is not rented twice
    assert decide(view(0.1, 0, pending=1, min_replicas=1), Streak(), TH, PLENTY).action == "hold"
    # never past max however long the load stays high, never under min however long it stays low
    assert "scale_up" not in acted(run([2.0] * 50, actual=4, max_replicas=4, follow=True))
    ds = run([0.0] * 50, actual=3, min_replicas=2, follow=True)
    assert acted(ds) == ["scale_down"]


def test_the_budget_ceiling_blocks_a_rental_and_keeps_the_want():
    tight = Supply(budget_per_hour_nano=parse_usd("1.00"), spend_per_hour_nano=parse_usd("0.80"), offer=OFFER)
    ds = run([0.95] * 6, supply=tight)
    assert [d.action for d in ds] == ["wait_up", "wait_up", "blocked", "blocked", "blocked", "blocked"]
    assert ds[2].reason.endswith("rent Vast.ai RTX 4090 at $0.31/h would take spend to $1.11/h, over the budget "
                                 "of $1.00/h")
    assert ds[5].streak.up == 6  # still wanting: it rents as soon as the budget allows
    exact = Supply(budget_per_hour_nano=parse_usd("1.11"), spend_per_hour_nano=parse_usd("0.80"), offer=OFFER)
    assert decide(view(0.95), Streak(up=2), TH, exact).action == "scale_up"


def test_resuming_a_drained_host_is_free_and_comes_first():
    broke = Supply(budget_per_hour_nano=0, spend_per_hour_nano=parse_usd("5"), resumable="local-4090", offer=OFFER)
    d = decide(view(0.95), Streak(up=2), TH, broke)
    assert d.action == "scale_up" and d.resume == "local-4090" and d.reason.endswith("; resume local-4090")


def test_no_offer_blocks_with_the_reason_and_unknown_profit_is_said():
    none = Supply(budget_per_hour_nano=parse_usd("10"), spend_per_hour_nano=0, no_offer="no cloud has credentials")
    d = decide(view(0.95), Streak(up=2), TH, none)
    assert d.action == "blocked" and d.reason.endswith("; no cloud has credentials")
    unknown = Supply(parse_usd("10"), 0, offer=OfferChoice("Local", "RTX 4090", parse_usd("0.31"), None))
    assert decide(view(0.95), Streak(up=2), TH, unknown).reason.endswith("expected profit unknown")


def test_a_minimum_profit_blocks_a_rental_that_would_not_earn_it():
    dear = OfferChoice("Local", "RTX 3090", parse_usd("0.19"), -parse_usd("0.18"))
    guarded = Supply(parse_usd("10"), 0, offer=dear, min_profit_per_hour_nano=0)
    ds = run([0.95] * 5, supply=guarded)
    assert [d.action for d in ds] == ["wait_up", "wait_up", "blocked", "blocked", "blocked"]
    assert ds[2].reason.endswith("; rent Local RTX 3090 at $0.19/h: expected profit -$0.18/h, under the minimum "
                                 "of $0.00/h")
    assert ds[4].streak.up == 5  # still wanting: it rents once demand makes the offer pay
    # At the minimum exactly it rents; without a minimum it rents on load alone (the default).
    at = Supply(parse_usd("10"), 0, offer=OFFER, min_profit_per_hour_nano=parse_usd("0.42"))
    assert decide(view(0.95), Streak(up=2), TH, at).action == "scale_up"
    above = Supply(parse_usd("10"), 0, offer=OFFER, min_profit_per_hour_nano=parse_usd("0.43"))
    assert decide(view(0.95), Streak(up=2), TH, above).action == "blocked"
    assert decide(view(0.95), Streak(up=2), TH, Supply(parse_usd("10"), 0, offer=dear)).action == "scale_up"
    # No revenue to estimate from: not rented while a minimum is set.
    unknown = Supply(parse_usd("10"), 0, offer=OfferChoice("Local", "RTX 3090", parse_usd("0.19"), None),
                     min_profit_per_hour_nano=0)
    d = decide(view(0.95), Streak(up=2), TH, unknown)
    assert d.action == "blocked" and d.reason.endswith("no revenue yet to expect the minimum profit of $0.00/h from")
    # Below the model's minimum the operator asked for the replica whatever it earns; the budget still holds.
    d = decide(view(0.1, 0, min_replicas=1), Streak(), TH, guarded)
    assert d.action == "scale_up" and d.reason.endswith("expected profit -$0.18/h")
    broke = Supply(parse_usd("0.10"), 0, offer=dear, min_profit_per_hour_nano=0)
    assert decide(view(0.1, 0, min_replicas=1), Streak(), TH, broke).action == "blocked"
    # A drained host comes back for free: no minimum applies.
    free = Supply(parse_usd("10"), 0, resumable="local-3090", offer=dear, min_profit_per_hour_nano=parse_usd("1"))
    assert decide(view(0.95), Streak(up=2), TH, free).resume == "local-3090"


def test_without_supply_a_scale_up_asks_for_it():
    d = decide(view(0.95), Streak(up=2), TH, None)
    assert d.action == "scale_up" and d.needs_supply
    assert decide(view(0.95), Streak(up=1), TH, None).action == "wait_up"


def test_off_computes_desired_and_never_acts():
    ds = run([0.95] * 10, enabled=False, off_reason="scaling is off for this model")
    assert {d.action for d in ds} == {"off"}
    assert ds[-1].desired == 4 and ds[-1].streak.up == 10  # ceil(2 x 0.95 / 0.6)
    assert ds[-1].reason.endswith("would scale up, but scaling is off for this model")
    assert decide(view(0.5, 0, enabled=False), Streak(), TH, PLENTY).action == "off"  # below min: still off
