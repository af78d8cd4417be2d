"""The ledger's in-memory state: what the hot path reads instead of the database.

Only the Ledger mutates it, synchronously on the event loop, so a check and the change it
guards can never interleave with another request's.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Account:
    id: int
    code: str
    kind: str
    owner: str | None
    credit_normal: bool
    debit_cap: bool
    credit_cap: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance(self) -> int:
        """Posted balance on the account's normal side (what a client or host would call it)."""
        net = self.credits_posted - self.debits_posted
        return net if self.credit_normal else -net

    @property
    def available(self) -> int:
        """What can still be debited (credit-normal) or credited (debit-normal), holds included."""
        if self.credit_normal:
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(slots=True)
class Hold:
    key: str
    debit: Account
    credit: Account
    amount: int
    code: str
    ref: str | None
    expires_us: int | None
    created_us: int


@dataclass(slots=True)
class Op:
    """One caller's unit of work: its rows, the balance deltas they imply, and its future.

    Everything in an Op commits in the same transaction or not at all.
    """

    # Rows as tuples in the writer's column order (writer.TRANSFER_COLUMNS, USAGE_COLUMNS).
    transfers: list[tuple] = field(default_factory=list)
    usage: list[tuple] = field(default_factory=list)
    open_add: list[tuple] = field(default_factory=list)  # (key, expires_us)
    open_del: list[str] = field(default_factory=list)
    # (account id, debits_posted, credits_posted, debits_pending, credits_pending) deltas
    deltas: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    new_account: dict | None = None
    result: object = None
    future: object = None  # asyncio.Future, set by the writer when durable (or failed)
