"""The demo traffic's wave (backend/localfleet/traffic.py rate_at): it must rise and fall within
minutes, between ~0.3x and ~3x the base rate, so that `serve --local` shows the autoscaler acting."""

from __future__ import annotations

import pytest

from backend.localfleet.traffic import WAVE_HIGH, WAVE_LOW, WAVE_PERIOD_S, rate_at

BASE = 4.0


def samples(period_s: float = WAVE_PERIOD_S, step_s: float = 1.0) -> list[float]:
    return [rate_at(i * step_s, BASE) for i in range(int(period_s / step_s) + 1)]


def test_it_starts_at_the_base_rate_and_rises():
    assert rate_at(0, BASE) == pytest.approx(BASE)
    assert rate_at(10, BASE) > rate_at(0, BASE)


def test_one_cycle_spans_low_to_high_within_minutes():
    rates = samples()
    assert 5 * 60 <= WAVE_PERIOD_S <= 8 * 60
    assert min(rates) == pytest.approx(WAVE_LOW * BASE, rel=1e-3)
    assert max(rates) == pytest.approx(WAVE_HIGH * BASE, rel=1e-3)
    assert WAVE_LOW <= 0.35 and WAVE_HIGH >= 2.5
    peak_at, trough_at = rates.index(max(rates)), rates.index(min(rates))
    assert 60 < peak_at < 240 < trough_at < WAVE_PERIOD_S  # the peak comes first, within a few minutes


def test_it_repeats_and_is_deterministic():
    for t in (0, 37.5, 123, 300):
        assert rate_at(t + WAVE_PERIOD_S, BASE) == pytest.approx(rate_at(t, BASE))
        assert rate_at(t, BASE) == rate_at(t, BASE)


def test_it_stays_long_enough_near_the_peak_and_the_trough_for_a_decision():
    # The autoscaler wants a condition held over its window (the demo: 60 s) and a few decisions.
    rates = samples()
    busy = sum(r >= 0.8 * WAVE_HIGH * BASE for r in rates)
    idle = sum(r <= 1.5 * WAVE_LOW * BASE for r in rates)
    assert busy >= 90 and idle >= 90


def test_it_scales_with_the_base_rate_and_never_goes_negative():
    for t in range(0, int(WAVE_PERIOD_S), 7):
        assert rate_at(t, 2 * BASE) == pytest.approx(2 * rate_at(t, BASE))
        assert rate_at(t, BASE) > 0
    assert rate_at(50, 0.0) == 0.0
