"""The payout rules, pure: how much a payout takes, when a host is due, how long a failed one waits,
what a host's threshold and Stripe account may be."""

from __future__ import annotations

import re

from backend.field_errors import FieldError
from backend.money import MAX_AMOUNT_NANO, format_usd

NANO_PER_CENT = 10_000_000  # Stripe moves whole cents
STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")
MAX_REFERENCE = 200


def payout_amount(payable: int) -> int:
    """What one payout takes of a host's payable: all of it, in whole cents (the fraction of a cent
    waits for the next payout), at most one ledger amount."""
    return min(max(payable, 0), MAX_AMOUNT_NANO) // NANO_PER_CENT * NANO_PER_CENT


def is_due(payable: int, threshold: int) -> bool:
    """Paid once what the host is owed reaches its threshold (and there is a whole cent to pay)."""
    return payable >= threshold and payout_amount(payable) > 0


def retry_wait_s(backoff_s: list[float], failures: int) -> float:
    """The wait after `failures` failed attempts in a row (>= 1): the list's last entry repeats."""
    return backoff_s[min(max(failures, 1), len(backoff_s)) - 1]


def check_threshold(threshold: int, minimum: int) -> int:
    if threshold < minimum:
        raise FieldError("threshold_usd", f"must be at least {format_usd(minimum, places=2)}, "
                                          f"got {format_usd(threshold, places=2)}")
    if threshold % NANO_PER_CENT:
        raise FieldError("threshold_usd", "payouts move whole cents: at most 2 decimals")
    if threshold > MAX_AMOUNT_NANO:
        raise FieldError("threshold_usd", f"must be at most {format_usd(MAX_AMOUNT_NANO, places=2)}")
    return threshold


def check_stripe_account(account: str) -> str:
    account = account.strip()
    if not STRIPE_ACCOUNT.match(account):
        raise FieldError("stripe_account", f"must be a Stripe Connect account id such as acct_1A2b3C4d5E6f7G8h, "
                                           f"got {account[:80]!r}")
    return account


def check_reference(reference: str) -> str:
    reference = reference.strip()
    if not reference:
        raise FieldError("reference", "say how the host was paid (a bank transfer's reference, say): "
                                      "it is kept with the payout")
    if len(reference) > MAX_REFERENCE or "\x00" in reference:
        raise FieldError("reference", f"must be text of at most {MAX_REFERENCE} characters")
    return reference
