"""What a client may see and do with its own API key (GET /v1/me, POST/DELETE /v1/me/keys): its
credit as the ledger holds it, and its keys. Another client's key is answered exactly as a key that
does not exist, so a key id never tells whether it belongs to someone."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from backend.clients.service import ClientDirectory, ClientError, KeyInfo
from backend.ledger import chart
from backend.ledger.errors import UnknownAccount
from backend.ledger.service import Ledger

# Enough for every service and environment a client runs; a runaway script creating keys stops here.
MAX_ACTIVE_KEYS = 100


class KeyRefused(Exception):
    """A key change the client may not make (its last active key, too many keys)."""


@dataclass(frozen=True, slots=True)
class Credit:
    balance: int  # posted prepaid credit, nano-USD
    holds: int  # held for requests in flight
    available: int  # balance minus holds: what a new request may spend, and what auto-recharge watches
    owed: int  # what the client owes us (a refund or dispute its credit could not cover)


def credit(ledger: Ledger, client_id: str) -> Credit:
    """The client's credit from the ledger's in-memory accounts (no database read)."""
    acc = ledger.account(chart.client_account(client_id))
    try:  # opened only when a refund or dispute first leaves something owed
        owed = ledger.account(chart.receivable_account(client_id)).balance
    except UnknownAccount:
        owed = 0
    return Credit(acc.balance, acc.debits_pending, acc.available, owed)


def own_key(clients: ClientDirectory, client_id: str, key_id: str) -> KeyInfo:
    """The client's key `key_id`; ClientError, worded as for a missing key, when it is another's."""
    try:
        key = clients.key(key_id)
    except ClientError:
        key = None
    if key is None or key.client_id != client_id:
        raise ClientError(f"no key {key_id!r}")
    return key


# Key changes of one directory, one at a time: each checks the client's other keys and then awaits
# the database, so two concurrent revocations could otherwise each leave the other as the last key.
_locks: weakref.WeakKeyDictionary[ClientDirectory, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock(clients: ClientDirectory) -> asyncio.Lock:
    lock = _locks.get(clients)
    if lock is None:
        lock = _locks[clients] = asyncio.Lock()
    return lock


async def issue_own_key(clients: ClientDirectory, client_id: str, name: str) -> tuple[KeyInfo, str]:
    async with _lock(clients):
        active = sum(not k.revoked for k in clients.keys(client_id))
        if active >= MAX_ACTIVE_KEYS:
            raise KeyRefused(f"this client has {active} active keys, the most it may hold; revoke one first")
        return await clients.issue_key(client_id, name)


async def revoke_own_key(clients: ClientDirectory, client_id: str, key_id: str) -> KeyInfo:
    """Revoke one of the client's keys at once; the key it calls with included, but never its last
    active key: a client locked out has no way back but the operator. Revoking a revoked key
    answers it again."""
    async with _lock(clients):
        key = own_key(clients, client_id, key_id)
        if not key.revoked and not any(not k.revoked and k.id != key.id for k in clients.keys(client_id)):
            raise KeyRefused(f"key {key.prefix}... is this client's last active key: create another "
                             f"(POST /v1/me/keys) before revoking it")
        return await clients.revoke_key(key.id)
