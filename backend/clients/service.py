"""Clients, API keys and credit. Keys live in memory (the hot path never reads the database);
changes are written to the database first, then take effect in memory at once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.clients.tables import CHANNELS, ApiKey, Client
from backend.field_errors import FieldError, Taken
from backend.ledger import chart
from backend.ledger.service import Ledger, TransferResult
from backend.money import format_usd
from backend.runtime.bus import ClientEvent, EventBus, KeyEvent
from backend.runtime.clock import Clock

KEY_PREFIX = "tm-"
VISIBLE = 10  # characters of a key shown after creation: "tm-" and 7 more


class ClientError(LookupError):
    pass


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(slots=True)
class KeyInfo:
    id: str
    client_id: str
    name: str
    prefix: str
    created_us: int
    revoked_us: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_us is not None


@dataclass(slots=True)
class ClientInfo:
    id: str
    name: str
    created_us: int
    channel: str = "direct"

    @property
    def account(self) -> str:
        return chart.client_account(self.id)


class ClientDirectory:
    def __init__(self, engine: AsyncEngine, ledger: Ledger, clock: Clock | None = None,
                 events: EventBus | None = None) -> None:
        self._engine = engine
        self._ledger = ledger
        self.clock = clock or ledger.clock
        self._events = events or EventBus(self.clock)
        self._clients: dict[str, ClientInfo] = {}
        self._keys: dict[str, KeyInfo] = {}
        self._by_hash: dict[str, KeyInfo] = {}
        # Clients not on the direct channel, for the settlement's one lookup per request.
        self._channels: dict[str, str] = {}

    async def load(self) -> None:
        async with self._engine.connect() as conn:
            for r in (await conn.execute(select(Client.__table__))).mappings():
                self._clients[r["id"]] = ClientInfo(r["id"], r["name"], r["created_us"], r["channel"])
                if r["channel"] != "direct":
                    self._channels[r["id"]] = r["channel"]
            for r in (await conn.execute(select(ApiKey.__table__))).mappings():
                key = KeyInfo(r["id"], r["client_id"], r["name"], r["prefix"], r["created_us"], r["revoked_us"])
                self._keys[key.id] = key
                self._by_hash[r["sha256"]] = key
        for channel in set(self._channels.values()):  # a settlement never opens an account
            await self._ledger.open_account(chart.channel_account(channel), chart.Kind.CHANNEL_PAYABLE, owner=channel)

    # ---------------------------------------------------------------- hot path
    def authenticate(self, secret: str) -> KeyInfo | None:
        """The key for a bearer secret, or None. A revoked key is returned (it says so)."""
        if not secret.startswith(KEY_PREFIX):
            return None
        return self._by_hash.get(key_hash(secret))

    def channel_of(self, client_id: str) -> str:
        """How the client's requests reach us ("direct" or "openrouter"): one dict read."""
        return self._channels.get(client_id, "direct")

    # ---------------------------------------------------------------- reads
    def client(self, client_id: str) -> ClientInfo:
        try:
            return self._clients[client_id]
        except KeyError:
            raise ClientError(f"no client {client_id!r}") from None

    def clients(self) -> list[ClientInfo]:
        return list(self._clients.values())

    def keys(self, client_id: str | None = None) -> list[KeyInfo]:
        return [k for k in self._keys.values() if client_id is None or k.client_id == client_id]

    def key(self, key_id: str) -> KeyInfo:
        try:
            return self._keys[key_id]
        except KeyError:
            raise ClientError(f"no key {key_id!r}") from None

    # ---------------------------------------------------------------- changes
    async def create_client(self, name: str, client_id: str | None = None) -> ClientInfo:
        name = name.strip()
        if not name:
            raise FieldError("name", "a client needs a name")
        client_id = client_id or f"c_{secrets.token_hex(6)}"
        if client_id in self._clients:
            raise Taken("id", f"client id {client_id!r} is taken")
        info = ClientInfo(client_id, name, self.clock.now_us())
        # The prepaid account first: a client without one could never be charged.
        await self._ledger.open_account(info.account, chart.Kind.CLIENT_PREPAID, owner=client_id)
        async with self._engine.begin() as conn:
            await conn.execute(insert(Client.__table__).values(id=info.id, name=info.name, created_us=info.created_us))
        self._clients[client_id] = info
        self._events.publish(ClientEvent(kind="client.created", subject=info.id, message=f"client {info.name} created"))
        return info

    async def issue_key(self, client_id: str, name: str = "") -> tuple[KeyInfo, str]:
        """A new key for the client. The secret is returned here and never again."""
        self.client(client_id)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = KeyInfo(f"key_{secrets.token_hex(6)}", client_id, name.strip(), secret[:VISIBLE], self.clock.now_us())
        digest = key_hash(secret)
        async with self._engine.begin() as conn:
            await conn.execute(insert(ApiKey.__table__).values(
                id=key.id, client_id=client_id, name=key.name, prefix=key.prefix, sha256=digest,
                created_us=key.created_us))
        self._keys[key.id] = key
        self._by_hash[digest] = key
        self._events.publish(KeyEvent(kind="key.issued", subject=key.id,
                                      message=f"key {key.prefix}... issued to {client_id}"))
        return key, secret

    async def revoke_key(self, key_id: str) -> KeyInfo:
        key = self.key(key_id)
        if key.revoked:
            return key
        ts = self.clock.now_us()
        async with self._engine.begin() as conn:
            await conn.execute(update(ApiKey.__table__).where(ApiKey.__table__.c.id == key_id).values(revoked_us=ts))
        key.revoked_us = ts  # the very next request with this key fails
        self._events.publish(KeyEvent(kind="key.revoked", subject=key.id,
                                      message=f"key {key.prefix}... of {key.client_id} revoked"))
        return key

    async def set_channel(self, client_id: str, channel: str) -> ClientInfo:
        """Mark how the client's requests reach us; from the next request settled on, an
        "openrouter" client's charges owe OpenRouter its fee (what was settled before stays)."""
        client = self.client(client_id)
        if channel not in CHANNELS:
            raise FieldError("channel", f"must be one of {', '.join(CHANNELS)}, got {channel!r}")
        if channel == client.channel:
            return client
        if channel != "direct":
            # Before any request can owe it: a settlement never opens an account.
            await self._ledger.open_account(chart.channel_account(channel), chart.Kind.CHANNEL_PAYABLE, owner=channel)
        async with self._engine.begin() as conn:
            await conn.execute(update(Client.__table__).where(Client.__table__.c.id == client_id)
                               .values(channel=channel))
        before, client.channel = client.channel, channel
        if channel == "direct":
            self._channels.pop(client_id, None)
        else:
            self._channels[client_id] = channel
        self._events.publish(ClientEvent(kind="client.channel", subject=client.id,
                                         message=f"client {client.name}: channel {before} -> {channel}"))
        return client

    async def grant_credit(self, client_id: str, amount: int, *, idempotency_key: str,
                           source: str = "grant", note: str | None = None) -> TransferResult:
        """Add prepaid credit: a free `grant` (promotions) or a `payment` received outside Stripe."""
        client = self.client(client_id)
        debit = {"grant": chart.PROMOTIONS, "payment": chart.PAYMENT_CLEARING}.get(source)
        if debit is None:
            raise FieldError("source", f"must be 'grant' or 'payment', got {source!r}")
        result = await self._ledger.transfer(idempotency_key, debit, client.account, amount, code=source, ref=note)
        if not result.replayed:
            self._events.publish(ClientEvent(kind="client.credit", subject=client.id,
                                             message=f"{format_usd(amount)} {source} to {client.name}"))
        return result
