"""What the operator could rent for a model now: every cloud with an API key is asked at once,
the offers that fit are ranked as cheapest_offer ranks them, and each carries what it would
earn per hour at the model's current demand. Under `serve --local` (`local` given) the local
provider's simulated offers are among them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from backend.catalogue import Catalogue
from backend.fleet.providers import PROVIDERS, Offer, Provider, ProviderError, fitting_offers, provider
from backend.fleet.providers.errors import label
from backend.money import format_usd
from backend.settings import Settings
from backend.wire.provision import OfferOut, OffersOut

# Providers whose offers are machines to rent; "local" and "ssh" have none of their own.
CLOUDS = tuple(p for p in PROVIDERS if p not in ("local", "ssh"))
LIST_TIMEOUT_S = 45.0  # one slow cloud must not hold up the others' offers for longer
NOT_RENTED = {
    "local": "Local: simulated hosts run inside `tokenmill serve --local`; nothing to rent",
    "ssh": "SSH: the operator's own machines are not offered; provision one with provider ssh and its address",
}

# The model's revenue per hour less host payouts at current demand; None without demand.
Demand = Callable[[str], Awaitable[int | None]]


async def list_offers(settings: Settings, catalogue: Catalogue, demand: Demand, model: str, *,
                      gpu: str | None = None, only: str | None = None, local: Provider | None = None) -> OffersOut:
    """Offers that fit `model` (KeyError for an unknown model, ValueError for a bad gpu/provider);
    `local`: the local provider of the simulated fleet, when one runs here."""
    entry = catalogue.model(model)
    if gpu is not None and gpu not in catalogue.gpu_by_id:
        raise ValueError(f"gpu: unknown GPU {gpu!r} (the catalogue lists {', '.join(catalogue.gpu_by_id)})")
    if only is not None and only not in PROVIDERS:
        raise ValueError(f"provider: unknown provider {only!r} (expected one of {', '.join(PROVIDERS)})")
    names = [only] if only else [*CLOUDS, *(["local"] if local is not None else [])]
    unavailable = [NOT_RENTED[n] for n in names if n in NOT_RENTED and not (n == "local" and local is not None)]
    clouds = [n for n in names if n in CLOUDS]
    answers = await asyncio.gather(*(_ask(settings, catalogue, n, gpu) for n in clouds))
    seen: list[Offer] = []
    if local is not None and "local" in names:
        seen.extend(await local.list_offers(gpu))
    for offers, problem in answers:
        seen.extend(offers)
        if problem:
            unavailable.append(problem)
    profit_base = await demand(entry.id)
    out = [OfferOut(o.provider, o.offer_id, o.gpu, o.gpu_name, o.gpu_count, o.vram_gb, o.price_per_hour,
                    format_usd(o.price_per_hour), o.region, o.kind,
                    None if profit_base is None else profit_base - o.price_per_hour)
           for o in fitting_offers(seen, entry, catalogue)]
    quant = entry.default_quantization
    return OffersOut(entry.id, quant, entry.vram_gb[quant], out, unavailable)


async def _ask(settings: Settings, catalogue: Catalogue, name: str, gpu: str | None) -> tuple[list[Offer], str | None]:
    """One cloud's offers, or why there are none (its errors never carry the API key: errors.py)."""
    try:
        async with provider(name, settings, catalogue=catalogue) as cloud:
            return await asyncio.wait_for(cloud.list_offers(gpu), LIST_TIMEOUT_S), None  # real I/O: a cloud's API
    except ProviderError as exc:
        return [], str(exc)  # provider errors name their provider
    except TimeoutError:
        return [], f"{label(name)}: did not list its offers within {LIST_TIMEOUT_S:g} s"
