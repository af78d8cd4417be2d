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
