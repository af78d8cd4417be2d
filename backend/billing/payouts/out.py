"""Payout rows as the wire shows them: the operator's (backend/wire/payouts.py) and the host's own
(hostkit/protocol.py)."""

from __future__ import annotations

from backend.billing.payouts.records import PayoutRow
from backend.billing.payouts.service import HostPayouts, HostPayoutStatus, RunResult, usd
from backend.wire.payouts import HostPayoutOut, PayoutOut, PayoutRunOut
from hostkit import protocol


def payout_out(p: PayoutRow, host_name: str) -> PayoutOut:
    return PayoutOut(p.id, p.host_id, host_name, p.amount, usd(p.amount), p.method, p.destination,  # type: ignore[arg-type]
                     p.state, p.stripe_transfer_id, p.reference, p.attempts, p.failure, p.created_us,  # type: ignore[arg-type]
                     p.updated_us, p.paid_us, p.paid_by)


def status_out(s: HostPayoutStatus) -> HostPayoutOut:
    return HostPayoutOut(
        s.host_id, s.host_name, s.method, s.stripe_account, s.threshold, usd(s.threshold),  # type: ignore[arg-type]
        s.threshold_is_default, usd(s.minimum), s.owed, usd(s.owed), s.failures, s.next_attempt_us, s.next_run_us,
        s.next, None if s.pending is None else payout_out(s.pending, s.host_name),
        None if s.last_paid is None else payout_out(s.last_paid, s.host_name))


def host_view(s: HostPayoutStatus) -> protocol.HostPayout:
    pending, last = s.pending, s.last_paid
    return protocol.HostPayout(
        s.host_id, s.method, s.stripe_account, s.threshold, usd(s.threshold), s.threshold_is_default, usd(s.minimum),
        s.owed, usd(s.owed), s.next, None if pending is None else pending.amount,
        None if pending is None else usd(pending.amount), None if last is None else last.amount,
        None if last is None else usd(last.amount), None if last is None else last.paid_us)


def run_out(r: RunResult, payouts: HostPayouts) -> PayoutRunOut:
    def outs(rows: list[PayoutRow]) -> list[PayoutOut]:
        return [payout_out(p, payouts.host_name(p.host_id)) for p in rows]

    return PayoutRunOut(outs(r.claimed), outs(r.paid), outs(r.awaiting_operator), outs(r.retrying), outs(r.failed))
