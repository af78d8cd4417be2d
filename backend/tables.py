"""Every table, imported once so that SQLModel.metadata (and Alembic) sees the whole schema."""

from backend.autoscaler.tables import ModelScaling
from backend.billing.invoice_tables import Invoice, InvoiceCounter, InvoiceLine
from backend.billing.payouts.tables import HostPayout, HostPayoutSettings
from backend.billing.tables import ClientBilling, Payment, StripeEvent
from backend.clients.tables import ApiKey, Client, LicenceAcceptance, LicencePolicy
from backend.fleet.tables import Host, ModelSetting
from backend.ledger.tables import LedgerAccount, LedgerOpenHold, LedgerTransfer, UsageEvent
from backend.pricing.tables import ModelPricing, PriceChange
from backend.provision.tables import ProvisionedHost, ProvisionRun, ProvisionStep
from backend.runtime.tables import ScheduleRun

__all__ = [
    "ApiKey",
    "Client",
    "ClientBilling",
    "Host",
    "HostPayout",
    "HostPayoutSettings",
    "Invoice",
    "InvoiceCounter",
    "InvoiceLine",
    "LedgerAccount",
    "LedgerOpenHold",
    "LedgerTransfer",
    "LicenceAcceptance",
    "LicencePolicy",
    "ModelPricing",
    "ModelScaling",
    "ModelSetting",
    "Payment",
    "PriceChange",
    "ProvisionRun",
    "ProvisionStep",
    "ProvisionedHost",
    "ScheduleRun",
    "StripeEvent",
    "UsageEvent",
]
