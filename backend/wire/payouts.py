"""Shapes of the host payout API for the operator: GET /admin/payouts, POST /admin/payouts/run,
POST /admin/payouts/{id}/mark-paid, GET and PUT /admin/hosts/{id}/payout. Money is integer nano-USD
in `*_nano`, with the USD amount beside it as a decimal string; times are µs since the epoch, UTC.
(The host's own view, GET/PUT /hosts/{id}/payout, is hostkit/protocol.py's HostPayout.)"""

from __future__ import annotations

from typing import Literal

import msgspec

PayoutMethod = Literal["stripe", "manual"]
Destination = Literal["none", "stripe", "manual"]
PayoutState = Literal["pending", "paid", "failed", "canceled"]


class PayoutOut(msgspec.Struct):
    id: str  # also the Stripe idempotency key and transfer group
    host_id: str
    host_name: str
    amount_nano: int
    amount_usd: str
    method: PayoutMethod
    destination: str  # the Stripe account, "" for manual
    state: PayoutState
    stripe_transfer_id: str | None
    reference: str  # the operator's, for a manual payout
    attempts: int  # failed attempts so far
    failure: str  # the last one's words
    created_us: int
    updated_us: int
    paid_us: int | None
    paid_by: str  # "stripe", "operator"


class HostPayoutOut(msgspec.Struct):
    host_id: str
    host_name: str
    method: Destination  # none: no destination yet, never paid
    stripe_account: str | None
    threshold_nano: int
    threshold_usd: str
    threshold_is_default: bool  # follows [payouts] default_threshold_usd
    minimum_threshold_usd: str
    owed_nano: int  # the host payable: earned, not yet paid
    owed_usd: str
    failures: int  # failed attempts in a row
    next_attempt_us: int  # 0: no wait; else the loop leaves the host until then
    next_run_us: int | None  # the payout loop's next run
    next: str  # the next payout, in words
    pending: PayoutOut | None
    last_paid: PayoutOut | None


class SetPayoutSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """PUT /admin/hosts/{id}/payout. A field left out is left as it is. threshold_usd: a decimal
    USD string (at least [payouts] minimum_threshold_usd, whole cents) or "default"; stripe_account
    ("acct_...") makes Stripe the destination unless method says otherwise."""

    threshold_usd: str | None = None
    method: Destination | None = None
    stripe_account: str | None = None


class MarkPaid(msgspec.Struct, forbid_unknown_fields=True):
    """POST /admin/payouts/{id}/mark-paid: how the host was paid (a bank transfer's reference...)."""

    reference: str


class PayoutRunOut(msgspec.Struct):
    claimed: list[PayoutOut]  # payouts this run started
    paid: list[PayoutOut]
    awaiting_operator: list[PayoutOut]  # manual payouts due: pay them, then mark them paid
    retrying: list[PayoutOut]  # Stripe did not answer: the same transfer is asked for again after a wait
    failed: list[PayoutOut]  # Stripe refused: the next payout is a new one
