"""The chart of accounts. Kinds carry their rules; the chart grows by adding kinds here.

Credit-normal accounts hold what we owe (client prepaid credit, host earnings) or earn
(revenue); debit-normal accounts hold what we have or spend (payment clearing, GPU cost, fees).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    CLIENT_PREPAID = "client_prepaid"
    REVENUE = "revenue"
    HOST_PAYABLE = "host_payable"
    GPU_COST = "gpu_cost"
    PAYMENT_CLEARING = "payment_clearing"
    FEES = "fees"
    PROMOTIONS = "promotions"
    RECEIVABLE = "receivable"  # a client owes us: a refund or dispute that its balance could not cover
    PROVIDER_PAYABLE = "provider_payable"  # we owe a GPU cloud for the time its machines ran
    CHANNEL_PAYABLE = "channel_payable"  # we owe a marketplace (OpenRouter) its fee on the traffic it brought


@dataclass(frozen=True, slots=True)
class KindRule:
    credit_normal: bool
    # Never let debits exceed credits: a client cannot spend more than was paid in, and a host
    # cannot be paid out more than it earned.
    debit_cap: bool = False
    credit_cap: bool = False


RULES: dict[str, KindRule] = {
    Kind.CLIENT_PREPAID: KindRule(credit_normal=True, debit_cap=True),
    Kind.REVENUE: KindRule(credit_normal=True),
    Kind.HOST_PAYABLE: KindRule(credit_normal=True, debit_cap=True),
    Kind.GPU_COST: KindRule(credit_normal=False),
    Kind.PAYMENT_CLEARING: KindRule(credit_normal=False),
    Kind.FEES: KindRule(credit_normal=False),
    Kind.PROMOTIONS: KindRule(credit_normal=False),
    # A receivable is settled at most for what was owed.
    Kind.RECEIVABLE: KindRule(credit_normal=False, credit_cap=True),
    Kind.PROVIDER_PAYABLE: KindRule(credit_normal=True),
    Kind.CHANNEL_PAYABLE: KindRule(credit_normal=True),
}

# One of each, opened when the ledger starts.
REVENUE = "revenue"
GPU_COST = "gpu_cost"
PAYMENT_CLEARING = "payment_clearing"
FEES = "fees"
PROMOTIONS = "promotions"
SYSTEM_ACCOUNTS = {
    REVENUE: Kind.REVENUE,
    GPU_COST: Kind.GPU_COST,
    PAYMENT_CLEARING: Kind.PAYMENT_CLEARING,
    FEES: Kind.FEES,
    PROMOTIONS: Kind.PROMOTIONS,
}


def client_account(client_id: str) -> str:
    return f"client:{client_id}"


def host_account(host_id: str) -> str:
    return f"host:{host_id}:payable"


def receivable_account(client_id: str) -> str:
    return f"client:{client_id}:receivable"


def provider_account(provider: str) -> str:
    return f"provider:{provider}:payable"


def channel_account(channel: str) -> str:
    return f"channel:{channel}:payable"
