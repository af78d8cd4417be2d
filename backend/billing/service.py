"""Billing's public face: Stripe top-ups (Checkout), the webhook that credits them, auto-recharge,
refunds and disputes. Built in Services.start; the router calls `recharge.check` after each hold."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.billing.checkout import Checkout
from backend.billing.credit_moves import CreditMoves
from backend.billing.recharge import AutoRecharge
from backend.billing.records import BillingRecords
from backend.billing.stripe_gateway import StripeGateway
from backend.billing.webhook import StripeWebhook
from backend.clients.service import ClientDirectory
from backend.ledger.service import Ledger
from backend.runtime.bus import EventBus
from backend.runtime.clock import Clock
from backend.settings import Settings


class Billing:
    def __init__(self, settings: Settings, engine: AsyncEngine, ledger: Ledger, clients: ClientDirectory,
                 bus: EventBus, clock: Clock) -> None:
        self.settings, self.ledger, self.clients = settings, ledger, clients
        self.gateway = StripeGateway(settings.billing)
        self.records = BillingRecords(engine, clock)
        self.moves = CreditMoves(ledger)
        self.recharge = AutoRecharge(settings.billing, ledger, self.records, self.gateway, bus, clock)
        self.checkout = Checkout(settings, self.records, self.gateway, clients)
        self.webhook = StripeWebhook(settings.billing, self.records, self.gateway, self.moves, self.recharge, bus,
                                     clock)

    async def start(self) -> None:
        await self.recharge.load()

    async def close(self) -> None:
        await self.recharge.close()
        await self.gateway.close()
