"""Simulated hosts on this machine (`tokenmill serve --local`, the simulator).

Offers are the catalogue's, at catalogue prices, so planning and the profit simulation see the
same prices the operator would rent at. create() and destroy() only keep the books: the local
fleet (backend/localfleet) starts and stops the simulated host processes itself, so an instance has no
SSH address. Records live in memory; the fleet registry keeps the durable ones.
"""

from __future__ import annotations

import itertools

import msgspec

from backend.catalogue import Catalogue
from backend.catalogue.schema import Offer as CatalogueOffer
from backend.fleet.providers.base import CreateOptions, Instance, Offer, OfferKind, Provider
from backend.fleet.providers.errors import NotFound

_KINDS: dict[str, OfferKind] = {
    "on_demand": "on_demand", "reserved": "on_demand", "community": "community",
    "spot": "spot", "interruptible": "spot",
}


class LocalProvider(Provider):
    name = "local"

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._instances: dict[str, Instance] = {}
        self._ids = itertools.count(1)

    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        return [self._offer(o) for o in self.catalogue.offers if gpu is None or o.gpu == gpu]

    def _offer(self, o: CatalogueOffer) -> Offer:
        card = self.catalogue.gpu_by_id[o.gpu]
        return Offer(provider=self.name, offer_id=f"{o.provider}:{o.gpu}:x{o.gpu_count}:{o.kind}", gpu=o.gpu,
                     gpu_name=card.name, gpu_count=o.gpu_count, vram_gb=float(card.vram_gb),
                     price_per_hour=o.price_per_hour, region="local", kind=_KINDS[o.kind])

    async def create(self, offer: Offer, *, name: str, ssh_public_key: str,
                     options: CreateOptions | None = None) -> Instance:
        self._check_offer(offer)
        existing = await self.find(name)
        if existing is not None:
            return existing  # the same name twice is the same host, as with the clouds' lookups
        instance = Instance(provider=self.name, instance_id=f"local-{next(self._ids)}", name=name, state="running",
                            provider_state="simulated", price_per_hour=offer.price_per_hour)
        self._instances[instance.instance_id] = instance
        return instance

    async def status(self, instance_id: str) -> Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise NotFound(self.name, f"no local instance {instance_id}") from None

    async def destroy(self, instance_id: str) -> None:
        instance = self._instances.get(instance_id)
        if instance is not None:
            self._instances[instance_id] = msgspec.structs.replace(instance, state="terminated",
                                                                   provider_state="terminated")

    async def find(self, name: str) -> Instance | None:
        return next((i for i in self._instances.values() if i.name == name and i.state != "terminated"), None)

