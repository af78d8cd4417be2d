"""Provider prices to nano-USD: exact, rounded up past the ninth decimal, never a float."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.fleet.providers.prices import cents_to_nano, usd_to_nano
from backend.money import MoneyError, parse_usd


@pytest.mark.parametrize(("value", "nano"), [
    (Decimal("0.34"), 340_000_000),
    ("0.34", 340_000_000),
    ("$2.39", 2_390_000_000),
    (3, 3_000_000_000),
    (Decimal("0"), 0),
    (Decimal("1.000000001"), 1_000_000_001),
    (Decimal("0.2466759259259259"), 246_675_926),  # Vast's dph_total: rounded up, not down
    (Decimal("0.1000000000000000055511151231257827"), 100_000_001),  # what float(0.1) really is
    (Decimal("9.25925925925926e-06"), 9_260),
])
def test_exact_conversion(value, nano):
    assert usd_to_nano(value) == nano


def test_json_numbers_decoded_as_decimal_keep_their_digits():
    body = json.loads('{"securePrice": 0.69, "dph_total": 0.2466759259259259}', parse_float=Decimal)
    assert usd_to_nano(body["securePrice"]) == 690_000_000
    assert usd_to_nano(body["dph_total"]) == 246_675_926


@pytest.mark.parametrize("bad", [0.34, True, None, "cheap", "-0.10", Decimal("NaN"), Decimal("Infinity"), [1]])
def test_refused(bad):
    with pytest.raises(MoneyError):
        usd_to_nano(bad, what="securePrice")


def test_a_float_is_refused_with_a_clear_reason():
    with pytest.raises(MoneyError, match=r"dph_total: 0\.3 is a float"):
        usd_to_nano(0.3, what="dph_total")


@pytest.mark.parametrize(("cents", "nano"), [(129, 1_290_000_000), (2392, 23_920_000_000), (0, 0)])
def test_cents(cents, nano):
    assert cents_to_nano(cents) == nano


@pytest.mark.parametrize("bad", [1.29, -1, "129", True])
def test_cents_refused(bad):
    with pytest.raises(MoneyError):
        cents_to_nano(bad)


@given(st.decimals(min_value=0, max_value=10_000, places=9, allow_nan=False, allow_infinity=False))
def test_agrees_with_the_ledgers_parser_when_nothing_needs_rounding(value):
    assert usd_to_nano(value) == parse_usd(str(value))


@given(st.decimals(min_value=0, max_value=100, places=15, allow_nan=False, allow_infinity=False))
def test_rounding_up_never_loses_more_than_one_nano(value):
    nano = usd_to_nano(value)
    assert Decimal(nano) >= value * 10**9 > Decimal(nano - 1)
