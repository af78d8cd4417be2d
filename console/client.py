"""The console's admin client is the backend's typed one (backend/wire/admin_client.py), shared
with the CLI. Views only talk to the backend through it, so a test can hand the app a small fake
with the same methods. New admin calls go there, not here."""

from __future__ import annotations

from backend.wire.admin_client import (
    HOST_ACTIONS,
    AdminClient,
    AdminError,
    BackendUnavailable,
    tls_verification,
)

__all__ = ["HOST_ACTIONS", "AdminClient", "AdminError", "BackendUnavailable", "tls_verification"]
