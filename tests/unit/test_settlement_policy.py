"""The split of a settled request's charge, as the request path asks it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backend.ledger.settlement_policy import host_share


def test_a_host_gets_its_share_rounded_down():
    assert host_share(1_000, 5_000) == 500
    assert host_share(999, 2_500) == 249  # 249.75: the fraction stays with the operator
    assert host_share(1_000, 0) == 0 and host_share(0, 10_000) == 0
    assert host_share(1_000, 10_000) == 1_000


@given(st.integers(0, 10**17), st.integers(0, 10_000))
def test_a_share_never_exceeds_the_charge(charged, bps):
    assert 0 <= host_share(charged, bps) <= charged
