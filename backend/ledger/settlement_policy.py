"""Who gets what of a settled request: the rules money follows, asked by the request path.

Routing measures a request (tokens, price, which host served it); how the charge is split belongs
to the ledger, so that payouts and invoices (billing/) read the same rule the request path used.
"""

from __future__ import annotations

BPS = 10_000  # basis points in a whole


def host_share(charged: int, payout_share_bps: int) -> int:
    """The host's part of `charged` (nano-USD) at its payout share in basis points, rounded down:
    a fraction of a nano-dollar stays with the operator, so the shares never exceed the charge."""
    return charged * payout_share_bps // BPS


PPM = 1_000_000  # millionths in a whole


def channel_fee(charged: int, fee_ppm: int) -> int:
    """What a marketplace (OpenRouter) keeps of `charged` (nano-USD) at its fee in millionths,
    rounded to the nearest nano-dollar, half up: the fee owed is stated as exactly as a nano-dollar
    allows, neither side favoured. It is computed on the charge alone, so the host's share (on the
    same charge) is the same whichever way the request came."""
    return (charged * fee_ppm + PPM // 2) // PPM
