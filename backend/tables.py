"""Every table, imported once so that SQLModel.metadata (and Alembic) sees the whole schema."""

from backend.clients.tables import ApiKey, Client
from backend.fleet.tables import Host, ModelSetting
from backend.ledger.tables import LedgerAccount, LedgerOpenHold, LedgerTransfer, UsageEvent
from backend.provision.tables import ProvisionedHost, ProvisionRun, ProvisionStep
from backend.runtime.tables import ScheduleRun

__all__ = [
    "ApiKey",
    "Client",
    "Host",
    "LedgerAccount",
    "LedgerOpenHold",
    "LedgerTransfer",
    "ModelSetting",
    "ProvisionRun",
    "ProvisionStep",
    "ProvisionedHost",
    "ScheduleRun",
    "UsageEvent",
]
