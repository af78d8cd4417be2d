"""What the Provisioner needs of whoever runs simulated hosts on this machine (the local fleet
of `tokenmill serve --local`, backend/localfleet): provider "local" rents nothing real, so a
"rented" local host is an agent process this machine starts and stops.

Set as `Provisioner.local_hosts` by the local fleet; None otherwise, and provider local is refused.
"""

from __future__ import annotations

from typing import Protocol


class LocalHosts(Protocol):
    async def start_host(self, host_id: str, token: str, name: str, model: str, gpu: str) -> None:
        """Start a host agent (the simulated engine, serving `model` as a `gpu` would) that
        registers with `token`. Returns once the process is started, not once it serves."""

    async def stop_host(self, host_id: str) -> None:
        """Stop that agent (it drains and deregisters) and wait for it to exit; nothing when none runs."""
