"""The payout rules alone: what a payout takes, when a host is due, the wait after failures, and
the refusals of a threshold, a Stripe account or a reference, each naming its field."""

from __future__ import annotations

import pytest

from backend.billing.payouts import policy
from backend.field_errors import FieldError
from backend.money import MAX_AMOUNT_NANO

USD, CENT = 10**9, 10**7


def test_a_payout_takes_the_whole_payable_in_whole_cents():
    assert policy.payout_amount(12 * USD + 3 * CENT + 9_999_999) == 12 * USD + 3 * CENT
    assert policy.payout_amount(CENT - 1) == 0
    assert policy.payout_amount(-5 * USD) == 0  # never below zero
    assert policy.payout_amount(MAX_AMOUNT_NANO + 7 * USD) == MAX_AMOUNT_NANO  # one ledger amount at most


def test_a_host_is_due_once_its_payable_reaches_the_threshold():
    assert not policy.is_due(10 * USD - 1, 10 * USD)
    assert policy.is_due(10 * USD, 10 * USD)
    assert not policy.is_due(CENT - 1, 1)  # nothing a transfer could move


def test_the_last_backoff_repeats():
    waits = [60.0, 300.0]
    assert [policy.retry_wait_s(waits, n) for n in (1, 2, 3, 9)] == [60.0, 300.0, 300.0, 300.0]


@pytest.mark.parametrize(("threshold", "words"), [(50 * CENT, r"at least \$1\.00"), (USD + 1, "whole cents"),
                                                  (MAX_AMOUNT_NANO + CENT, "at most")])
def test_a_threshold_is_refused_with_its_field_named(threshold, words):
    with pytest.raises(FieldError, match=words) as exc:
        policy.check_threshold(threshold, USD)
    assert exc.value.field == "threshold_usd"
    assert policy.check_threshold(25 * USD, USD) == 25 * USD


@pytest.mark.parametrize("account", ["cus_123", "acct_", "acct_12 3", "acct_" + "x" * 65, ""])
def test_only_a_stripe_connect_account_id_is_a_destination(account):
    with pytest.raises(FieldError) as exc:
        policy.check_stripe_account(account)
    assert exc.value.field == "stripe_account"
    assert policy.check_stripe_account(" acct_1A2b3C ") == "acct_1A2b3C"


def test_a_manual_payout_needs_a_reference():
    for bad in ("", "   ", "x" * 201, "a\x00b"):
        with pytest.raises(FieldError) as exc:
            policy.check_reference(bad)
        assert exc.value.field == "reference"
    assert policy.check_reference(" SEPA #77 ") == "SEPA #77"
