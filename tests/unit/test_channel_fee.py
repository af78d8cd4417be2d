"""OpenRouter's fee: exactly fee_pct of a charge to the nearest nano-USD (half up), never a float in
the money; the setting refused outside 0..20 % or finer than 0.0001 %."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from pydantic import ValidationError

from backend.ledger.settlement_policy import channel_fee, host_share
from backend.settings import OpenRouterSettings


def test_the_fee_is_the_nearest_nano_dollar_half_up():
    ppm = OpenRouterSettings(fee_pct=5.5).fee_ppm
    assert ppm == 55_000
    assert channel_fee(1_000_000_000, ppm) == 55_000_000  # 5.5 % of $1
    assert channel_fee(10, ppm) == 1  # 0.55 -> 1
    assert channel_fee(9, ppm) == 0  # 0.495 -> 0
    assert channel_fee(100, 5_000) == 1  # 0.5 exactly -> 1 (half up)
    assert channel_fee(0, ppm) == 0
    assert channel_fee(123_456_789, 0) == 0
    rng = random.Random(15)
    for _ in range(2000):
        charged, ppm = rng.randint(0, 10**15), rng.randint(0, 200_000)
        exact = Fraction(charged * ppm, 1_000_000)
        fee = channel_fee(charged, ppm)
        assert abs(fee - exact) <= Fraction(1, 2) and (fee - exact != Fraction(-1, 2))
        assert 0 <= fee <= charged


def test_the_hosts_share_does_not_depend_on_the_fee():
    # Both are on the charge: a host is paid the same whichever way a request came.
    charged = 987_654_321
    assert host_share(charged, 7000) == 691_358_024
    assert host_share(charged, 7000) + channel_fee(charged, 55_000) <= charged


@pytest.mark.parametrize(("pct", "ppm"), [(0, 0), (5.5, 55_000), (7, 70_000), (20, 200_000), (5.1234, 51_234),
                                          (0.0001, 1)])
def test_fee_pct_in_millionths_exactly(pct, ppm):
    assert OpenRouterSettings(fee_pct=pct).fee_ppm == ppm


@pytest.mark.parametrize(("bad", "why"), [(-1, "from 0 to 20"), (20.5, "from 0 to 20"), (float("nan"), "from 0 to 20"),
                                          (5.55555, "at most 4 decimals")])
def test_a_fee_outside_the_range_or_too_fine_is_refused_by_name(bad, why):
    with pytest.raises(ValidationError, match=why) as e:
        OpenRouterSettings(fee_pct=bad)
    assert e.value.errors()[0]["loc"] == ("fee_pct",)


def test_the_default_fee_is_openrouters_5_5_percent():
    assert OpenRouterSettings().fee_pct == 5.5 and OpenRouterSettings().uptime_min_requests == 100
