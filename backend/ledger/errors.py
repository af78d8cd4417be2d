"""What the ledger refuses, each naming what is wrong. Nothing is written when one is raised."""

from __future__ import annotations

from backend.money import MAX_BALANCE_NANO, MAX_RUNNING_SUM_NANO, MoneyError, format_usd


class LedgerError(Exception):
    """Base class: the operation was refused and nothing was written."""


class InvalidAmount(LedgerError, MoneyError):
    pass


class UnknownAccount(LedgerError, KeyError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"unknown account {self.code!r}"


class AccountExists(LedgerError):
    pass


class InsufficientFunds(LedgerError):
    """The debit would take a capped account (a client's prepaid credit) below zero."""

    def __init__(self, account: str, needed: int, available: int) -> None:
        self.account, self.needed, self.available = account, needed, available
        super().__init__(
            f"account {account!r} has {format_usd(available)} available, "
            f"{format_usd(needed)} is needed ({format_usd(needed - available)} short)"
        )


class HoldNotFound(LedgerError, KeyError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no hold {self.key!r}"


class HoldResolved(LedgerError):
    """The hold was already posted, voided or expired: a hold resolves exactly once."""

    def __init__(self, key: str, how: str) -> None:
        self.key, self.how = key, how
        super().__init__(f"hold {key!r} was already resolved ({how}); a hold resolves exactly once")


class HoldExceeded(LedgerError):
    def __init__(self, key: str, held: int, asked: int) -> None:
        super().__init__(
            f"hold {key!r} reserved {format_usd(held)}; cannot post {format_usd(asked)} against it"
        )


class BalanceLimit(LedgerError):
    """The operation would take a client's or host's balance above MAX_BALANCE_NANO, or one of an
    account's running sums past what a 64-bit integer holds."""

    def __init__(self, account: str, total: int, *, running_sum: bool = False) -> None:
        self.account, self.total = account, total
        if running_sum:
            what = f"a running sum past the largest the ledger keeps, {format_usd(MAX_RUNNING_SUM_NANO, places=2)}"
        else:
            what = f"a balance above the largest one account may hold, {format_usd(MAX_BALANCE_NANO, places=2)}"
        super().__init__(f"account {account!r} would reach {format_usd(total, places=2)}: {what}")


class IdempotencyConflict(LedgerError):
    """The same idempotency key was used before with different content; `differences` says
    what differs, in words (e.g. "amount: $5.000000 before, $6.000000 now")."""

    def __init__(self, key: str, differences: list[str]) -> None:
        self.key, self.differences = key, differences
        super().__init__(
            f"idempotency key {key!r} was already used with different content "
            f"({'; '.join(differences)}); use a new key for a new operation"
        )


class InvalidRequest(LedgerError, ValueError):
    pass


class InvalidKey(InvalidRequest):
    """An idempotency key or account code that is empty, too long or not plain text."""


class LedgerUnavailable(LedgerError):
    """The write did not become durable (database error); it has been undone in memory."""
