"""The provider interface: what the fleet asks of any GPU cloud (or of our own machines).

A provider lists offers, rents one as an instance, reports the instance's state and SSH address,
and destroys it. What happens on the machine afterwards (bootstrap, hostkit, vLLM) is the
playbooks' business, over the SSH address reported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import msgspec

from backend.fleet.providers.errors import InvalidRequest, label

OfferKind = Literal["on_demand", "spot", "community"]
# failed: the provider says the instance will never come up (Vast "exited"/"offline", Lambda
# "unhealthy"); it may still bill until destroyed.
InstanceState = Literal["pending", "running", "stopped", "terminated", "failed"]


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """A machine shape one provider would rent out now, at a price for the whole machine."""

    provider: str
    offer_id: str  # what create() needs to rent exactly this offer
    gpu: str | None  # catalogue GPU id; None for a card the catalogue does not list
    gpu_name: str  # the provider's own name for the card, for the operator
    gpu_count: int
    vram_gb: float  # per GPU: the catalogue card's when known, else what the provider reports
    price_per_hour: int  # nano-USD per hour for all gpu_count GPUs
    region: str | None = None
    # on_demand: a data-centre machine that runs until we stop it; community: a marketplace
    # host's machine (RunPod community cloud, Vast.ai non-datacenter hosts); spot: may be
    # interrupted at any time.
    kind: OfferKind = "on_demand"

    @property
    def total_vram_gb(self) -> float:
        return self.vram_gb * self.gpu_count


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """A rented (or recorded) machine and how to reach it over SSH once it runs."""

    provider: str
    instance_id: str
    name: str
    state: InstanceState
    provider_state: str = ""  # the provider's own word for it, for the operator
    ssh_host: str | None = None  # None until the provider has assigned an address
    ssh_port: int = 22
    ssh_user: str = "root"
    price_per_hour: int | None = None  # nano-USD, when the provider says
    # Container port -> the public port the cloud forwards to it at ssh_host (RunPod portMappings,
    # Vast.ai ports), SSH's own left out (ssh_port); empty where ports are reached as they are
    # (Lambda's VMs, our own machines) and until the instance runs.
    ports: dict[int, int] = msgspec.field(default_factory=dict)


class CreateOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to set a rented machine up. Lambda rents VMs and ignores `image`."""

    image: str | None = None  # container image; None = the adapter's default (with sshd and CUDA)
    disk_gb: int = 100  # room for the model weights
    # TCP ports to expose besides SSH: the ports the engines listen on inside the machine (the
    # provisioner passes the ones it configures the agent with); a cloud that maps them to other
    # public ports reports the mapping in Instance.ports.
    ports: tuple[int, ...] = (8000,)


class Provider(ABC):
    """One GPU cloud, or our own machines. Async; safe to share within one event loop."""

    name: ClassVar[str]

    @property
    def label(self) -> str:
        return label(self.name)

    @abstractmethod
    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        """Offers available now, optionally only for one catalogue GPU id."""

    @abstractmethod
    async def create(self, offer: Offer, *, name: str, ssh_public_key: str,
                     options: CreateOptions | None = None) -> Instance:
        """Rent `offer` as an instance called `name` (unique: it is how a lost answer is recovered)."""

    @abstractmethod
    async def status(self, instance_id: str) -> Instance:
        """The instance as the provider sees it now; NotFound if it has none by that id."""

    @abstractmethod
    async def destroy(self, instance_id: str) -> None:
        """Stop paying for the instance. Destroying one that is already gone is not an error."""

    @abstractmethod
    async def find(self, name: str) -> Instance | None:
        """The live (not terminated) instance called `name`, if any."""

    async def aclose(self) -> None:  # noqa: B027 - providers without connections have nothing to release
        """Release connections; the provider is not used afterwards."""

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _check_offer(self, offer: Offer) -> None:
        if offer.provider != self.name:
            raise InvalidRequest(self.name, f"{self.label} cannot rent offer {offer.offer_id!r}, which comes "
                                            f"from {label(offer.provider)}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
