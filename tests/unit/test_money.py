from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.money import (
    MAX_AMOUNT_NANO,
    MAX_PRICE_NANO,
    MoneyError,
    cost_of_tokens,
    format_usd,
    parse_usd,
    require_nano,
)


@pytest.mark.parametrize(("text", "nano"), [("0.34", 340_000_000), ("$2.10", 2_100_000_000), ("0", 0),
                                            ("0.000000001", 1), (7, 7_000_000_000)])
def test_parse_usd(text, nano):
    assert parse_usd(text) == nano


@pytest.mark.parametrize(("bad", "why"), [(0.1, "float"), ("abc", "not a decimal"), ("0.0000000001", "precision"),
                                          ("-1", "zero or more"), ("NaN", "finite"), (None, "NoneType"),
                                          (True, "float")])
def test_parse_usd_refuses(bad, why):
    with pytest.raises(MoneyError, match=why):
        parse_usd(bad)


def test_amounts_are_bounded_far_below_int64():
    assert parse_usd("100000000") == MAX_AMOUNT_NANO < 2**63 // 10
    for bad in ("100000000.000000001", "5000000000", "1e10", "9" * 40, "1" + "0" * 30 + ".0000000001"):
        with pytest.raises(MoneyError, match="largest accepted"):
            parse_usd(bad, what="amount_usd")
    assert parse_usd("10000", max_nano=MAX_PRICE_NANO) == MAX_PRICE_NANO
    with pytest.raises(MoneyError, match=r"price: '10000.01' is above the largest accepted, \$10,000.00"):
        parse_usd("10000.01", what="price", max_nano=MAX_PRICE_NANO)
    assert require_nano(MAX_AMOUNT_NANO) == MAX_AMOUNT_NANO
    with pytest.raises(MoneyError, match="largest accepted"):
        require_nano(MAX_AMOUNT_NANO + 1)


@pytest.mark.parametrize("bad", [0, -1, 1.0, "5", None, True])
def test_require_nano_refuses(bad):
    with pytest.raises(MoneyError):
        require_nano(bad)


def test_format_usd_is_exact():
    assert format_usd(1) == "$0.000000"
    assert format_usd(1, places=9) == "$0.000000001"
    assert format_usd(-2_500_000_000) == "-$2.500000"
    assert format_usd(10**18) == "$1,000,000,000.000000"


@given(st.integers(0, 10**7), st.integers(0, 10**11))
def test_token_cost_rounds_up_and_never_undercharges(tokens, price):
    cost = cost_of_tokens(tokens, price)
    exact = Decimal(tokens) * price / 1_000_000
    assert cost >= exact
    assert cost - exact < 1
