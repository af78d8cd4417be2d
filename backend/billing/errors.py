"""Billing's refusals, mapped to HTTP statuses by the API from their type alone."""

from __future__ import annotations


class BillingError(Exception):
    """Something billing could not do; the message is for the client or operator to read."""


class NotConfigured(BillingError):
    """A Stripe setting is missing: the message names it (`[billing] stripe_secret_key`)."""


class NoSavedCard(BillingError):
    """Auto-recharge needs the card a Checkout top-up saved, and there is none."""


class StripeUnavailable(BillingError):
    """Stripe did not answer, or answered with an error that is not the client's card. `retryable`:
    the same request may succeed later (a network error, Stripe's 5xx or rate limit), as opposed to
    a request Stripe refused as such."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class BadSignature(BillingError):
    """A webhook whose Stripe-Signature does not verify, or signed too long ago."""
