"""The cheapest offer that can serve a model.

An offer fits when its GPUs together hold the model's weights and working KV cache at the
chosen quantization (models.toml vram_gb; vLLM splits a model over the GPUs of one machine with
tensor parallelism) and its cards run that quantization. Only cards the catalogue lists are
chosen: for any other card nothing says what vLLM does on it.

Compute capability, from vLLM's quantization hardware table
(https://docs.vllm.ai/en/latest/features/quantization/, "Supported Hardware"): FP8 runs natively
from Ada (8.9) and weight-only through Marlin kernels on Ampere (8.0); 4-bit AWQ needs Turing
(7.5). bf16 is served everywhere: below Ampere vLLM falls back to fp16 of the same size.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from backend.catalogue import Catalogue, ModelEntry
from backend.catalogue.schema import Quantization
from backend.fleet.providers.base import Offer, OfferKind
from backend.fleet.providers.errors import label
from backend.money import format_usd

MIN_COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {"fp8": (8, 0), "int4": (7, 5)}
# At the same price, the offer least likely to vanish under a client's request wins.
_KIND_RANK: dict[str, int] = {"on_demand": 0, "community": 1, "spot": 2}
# Spot machines can be taken back at any moment, failing the requests they serve.
DEFAULT_KINDS: tuple[OfferKind, ...] = ("on_demand", "community")


class NoOfferFits(LookupError):
    """No offer can serve the model; the message says what it needs and what was seen."""


def _capability(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def cheapest_offer(offers: Iterable[Offer], model: str | ModelEntry, catalogue: Catalogue,
                   quantization: Quantization | None = None, *,
                   kinds: Collection[str] = DEFAULT_KINDS) -> Offer:
    """The cheapest offer that fits `model` at `quantization` (default: the model's own).

    Ties go to the steadier kind (on-demand before community before spot), then to fewer GPUs
    (less tensor-parallel overhead), then to more memory (a bigger KV cache), then by provider
    and offer id so the choice is the same every time.
    """
    entry = catalogue.model(model) if isinstance(model, str) else model
    quant = quantization or entry.default_quantization
    if quant not in entry.vram_gb:
        have = ", ".join(sorted(entry.vram_gb))
        raise NoOfferFits(f"{entry.id} has no {quant} build in the catalogue (it has {have})")
    need = entry.vram_gb[quant]
    floor = MIN_COMPUTE_CAPABILITY.get(quant)

    seen = fitting_memory = wrong_card = 0
    biggest: Offer | None = None
    biggest_gb = 0
    candidates: list[Offer] = []
    for offer in offers:
        seen += 1
        card = catalogue.gpu_by_id.get(offer.gpu) if offer.gpu else None
        if card is None:
            continue
        total = card.vram_gb * offer.gpu_count
        if biggest is None or total > biggest_gb:
            biggest, biggest_gb = offer, total
        if total < need:
            continue
        fitting_memory += 1
        if floor is not None and _capability(card.compute_capability) < floor:
            wrong_card += 1
            continue
        if offer.kind not in kinds:
            continue
        candidates.append(offer)

    if candidates:
        return min(candidates, key=offer_order)
    what = f"No offer fits {entry.id} at {quant}"
    needs = f"it needs {need:g} GB of GPU memory"
    if seen == 0:
        raise NoOfferFits(f"{what} ({needs}): no offers were seen")
    if biggest is None:
        raise NoOfferFits(f"{what} ({needs}): none of the {_offers(seen)} seen is a GPU the catalogue lists")
    if fitting_memory == 0:
        raise NoOfferFits(f"{what}: {needs} and the biggest offer seen is {label(biggest.provider)} "
                          f"{biggest.gpu_name} x{biggest.gpu_count} with {biggest_gb:g} GB "
                          f"({format_usd(biggest.price_per_hour, places=2)}/h)")
    if wrong_card == fitting_memory:
        major, minor = floor or (0, 0)
        raise NoOfferFits(f"{what}: it needs a GPU of compute capability {major}.{minor} or newer, and every "
                          f"offer with {need:g} GB or more has an older one ({_offers(fitting_memory)})")
    kinds_shown = ", ".join(sorted(kinds)) or "none"
    raise NoOfferFits(f"{what} among the kinds allowed ({kinds_shown}): "
                      f"{_offers(fitting_memory - wrong_card)} of other kinds would")


def offer_order(offer: Offer) -> tuple:
    """How offers that fit are ranked (cheapest_offer's tie-breaks), best first."""
    return (offer.price_per_hour, _KIND_RANK.get(offer.kind, 9), offer.gpu_count, -offer.total_vram_gb,
            offer.provider, offer.offer_id)


def fitting_offers(offers: Iterable[Offer], model: str | ModelEntry, catalogue: Catalogue,
                   quantization: Quantization | None = None, *,
                   kinds: Collection[str] = DEFAULT_KINDS) -> list[Offer]:
    """Every offer that fits `model` (as cheapest_offer decides), best first; [] when none does."""
    fitting = []
    for offer in offers:
        try:
            fitting.append(cheapest_offer([offer], model, catalogue, quantization, kinds=kinds))
        except NoOfferFits:
            continue
    return sorted(fitting, key=offer_order)


def _offers(n: int) -> str:
    return f"{n} offer" if n == 1 else f"{n} offers"
