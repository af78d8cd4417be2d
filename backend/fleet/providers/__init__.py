"""GPU cloud providers: list offers, rent an instance, watch it come up, give it back.

    from backend.fleet.providers import provider, cheapest_offer
    async with provider("runpod", settings) as cloud:
        offer = cheapest_offer(await cloud.list_offers(), "llama-3.1-8b-instruct", catalogue)
        instance = await cloud.create(offer, name="tm-llama-1", ssh_public_key=key)

Adapters: runpod, vast, lambda (HTTP APIs), local (simulated hosts, catalogue prices) and ssh
(a machine the operator already has). Money is integer nano-USD; errors are ProviderError.
"""

from backend.fleet.providers.base import CreateOptions, Instance, InstanceState, Offer, OfferKind, Provider
from backend.fleet.providers.errors import (
    BadCredentials,
    BadResponse,
    InvalidRequest,
    MissingCredentials,
    NotFound,
    OfferTaken,
    OrphanedInstance,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from backend.fleet.providers.registry import PROVIDERS, provider, ssh_public_key
from backend.fleet.providers.retry import RetryPolicy
from backend.fleet.providers.select import NoOfferFits, cheapest_offer, fitting_offers

__all__ = [
    "PROVIDERS",
    "BadCredentials",
    "BadResponse",
    "CreateOptions",
    "Instance",
    "InstanceState",
    "InvalidRequest",
    "MissingCredentials",
    "NoOfferFits",
    "NotFound",
    "Offer",
    "OfferKind",
    "OfferTaken",
    "OrphanedInstance",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RetryPolicy",
    "cheapest_offer",
    "fitting_offers",
    "provider",
    "ssh_public_key",
]
