"""A machine the operator already has, reached over SSH: nothing is rented.

There are no offers to list. The operator names the machine instead: `address_offer()` turns
an address (and, if the operator wants it costed, the GPU and an hourly cost such as power)
into an Offer, and create() records it. The operator's machine must already trust the key the
playbooks connect with; we do not install it. destroy() forgets the machine; it never powers
anything off. Records live in memory; the fleet registry keeps the durable ones.
"""

from __future__ import annotations

import itertools
import re

import msgspec

from backend.fleet.providers.base import CreateOptions, Instance, Offer, Provider
from backend.fleet.providers.errors import InvalidRequest, NotFound

# user@host:port, host being a name, an IPv4 address or a bracketed IPv6 address
_ADDRESS = re.compile(r"^(?P<user>[^@\s]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:@\[\]]+):(?P<port>\d{1,5})$")


class SshProvider(Provider):
    name = "ssh"

    def __init__(self) -> None:
        self._instances: dict[str, Instance] = {}
        self._ids = itertools.count(1)

    @staticmethod
    def address_offer(host: str, *, port: int = 22, user: str = "root", gpu: str | None = None,
                      gpu_name: str = "", gpu_count: int = 1, vram_gb: float = 0.0,
                      price_per_hour: int = 0) -> Offer:
        """The operator's machine as an offer create() can record. `price_per_hour` is nano-USD."""
        if not host or not user or not 0 < port < 65536:
            raise InvalidRequest("ssh", f"SSH: {user}@{host}:{port} is not an address")
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return Offer(provider="ssh", offer_id=f"{user}@{shown}:{port}", gpu=gpu, gpu_name=gpu_name or (gpu or ""),
                     gpu_count=gpu_count, vram_gb=vram_gb, price_per_hour=price_per_hour, region=None,
                     kind="on_demand")

    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        return []

    async def create(self, offer: Offer, *, name: str, ssh_public_key: str,
                     options: CreateOptions | None = None) -> Instance:
        self._check_offer(offer)
        m = _ADDRESS.match(offer.offer_id)
        if m is None:
            raise InvalidRequest(self.name, f"SSH: {offer.offer_id!r} is not user@host:port")
        existing = await self.find(name)
        if existing is not None:
            return existing
        instance = Instance(provider=self.name, instance_id=f"ssh-{next(self._ids)}", name=name, state="running",
                            provider_state="operator's machine", ssh_host=m["host"].strip("[]"),
                            ssh_port=int(m["port"]), ssh_user=m["user"], price_per_hour=offer.price_per_hour)
        self._instances[instance.instance_id] = instance
        return instance

    async def status(self, instance_id: str) -> Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise NotFound(self.name, f"no SSH machine recorded as {instance_id}") from None

    async def destroy(self, instance_id: str) -> None:
        instance = self._instances.get(instance_id)
        if instance is not None:
            self._instances[instance_id] = msgspec.structs.replace(instance, state="terminated",
                                                                   provider_state="forgotten")

    async def find(self, name: str) -> Instance | None:
        return next((i for i in self._instances.values() if i.name == name and i.state != "terminated"), None)
