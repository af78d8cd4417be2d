"""Payout refusals, mapped to HTTP statuses by the API from their type alone."""

from __future__ import annotations

from backend.billing.errors import BillingError


class PayoutNotFound(BillingError):
    """No such payout, or no such host (404)."""


class PayoutConflict(BillingError):
    """The payout is not in a state that allows it (paid already, paid by Stripe, canceled) (409)."""
