"""The Models view's short cells for price and replicas, on tables of the admin API's shapes."""

from __future__ import annotations

import pytest

from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, ScalingDecisionOut
from console.model_detail import next_cell, replicas_cell
from console.views.models import decimal_usd, parse_limits, parse_price_pair

AUTOSCALER = AutoscalerOut(True, 60.0, 0.8, 0.3, 0.6, 3, 10, 5_000_000_000, 0, "ask", [], [])


def scaling(*, enabled=True, actual=2, pending=0, desired=2, up=0, down=0, nxt="hold",
            last: str | None = None) -> ModelScalingOut:
    decision = None if last is None else ScalingDecisionOut(1, "m", last, "why", desired, actual)  # type: ignore[arg-type]
    return ModelScalingOut("m", enabled, 1, 4, False, actual, pending, 0, desired, 0.5, 0.5, 0.0, up, down, None,
                           "in words", decision, next=nxt)  # type: ignore[arg-type]


@pytest.mark.parametrize(("s", "cell"), [
    (scaling(), "hold"),
    (scaling(enabled=False, nxt="off"), "off"),
    (scaling(desired=3, up=1, nxt="wait_up"), "+1 in 2"),
    (scaling(desired=1, down=5, nxt="wait_down"), "-1 in 5"),
    (scaling(desired=3, up=2, nxt="scale_up"), "+1 now"),
    (scaling(desired=3, up=2, nxt="scale_up", last="blocked"), "blocked"),
    (scaling(desired=1, down=9, nxt="scale_down"), "-1 now"),
    # One on its way and enough: it wants no more (the backend holds).
    (scaling(actual=1, pending=1, desired=2), "hold"),
])
def test_next_move(s, cell):
    assert next_cell(s, AUTOSCALER) == cell


def test_replicas_had_and_wanted():
    assert replicas_cell(scaling(actual=2, pending=1, desired=3), 2, True) == "2+1/3"
    assert replicas_cell(scaling(actual=2, desired=2), 2, True) == "2/2"
    assert replicas_cell(None, 0, True) == "0/-"  # a model the autoscaler does not look after
    assert next_cell(None, AUTOSCALER) == "-"
    assert replicas_cell(None, 1, False) == "1/N/A"  # no autoscaler at all
    assert next_cell(None, None) == "N/A"


def test_price_and_limits_input():
    assert parse_price_pair(" $0.2 , 0.45 ", "1,2") == "0.2,0.45"
    assert parse_price_pair("", "0.14,0.28") == "0.14,0.28"
    for bad in ("0.2", "0.2,x", "-1,2", "1e3,1", "0.2,0.3,0.4"):
        with pytest.raises(ValueError, match="prompt,completion"):
            parse_price_pair(bad, "0.14,0.28")
    assert parse_limits("2,3") == (2, 3)
    assert parse_limits("") == (None, None)
    assert parse_limits("2,") == (2, None)
    assert parse_limits(",3") == (None, 3)
    for bad, why in (("3,2", "min must not be more than max"), ("1,0", "max must be at least 1"),
                     ("a,b", "min,max"), ("-1,2", "min,max"), ("1", "min,max")):
        with pytest.raises(ValueError, match=why):
            parse_limits(bad)
    assert decimal_usd(140_000_000) == "0.14"
    assert decimal_usd(2_000_000_000) == "2"
    assert decimal_usd(1) == "0.000000001"
