"""What to simulate: the plan `tokenmill simulate` (and the quick-start wizard) runs.

`--fleet "rtx4090:vast:2,a100-80gb:runpod:1"`: entries `gpu:provider:count[:model]`, count hosts
each rented at that provider's catalogue offer for that GPU (its smallest, so a100-80gb:runpod is
RunPod's 8-GPU node); provider `owned`: one card whose running cost is the cheapest catalogue price
per card; `community`: one card, no cost, paid a share of what it earns.
Without a model the entry's hosts are shared out among the plan's models that fit the card.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from backend.catalogue import Catalogue
from backend.field_errors import FieldError

DEMAND_PROFILES = ("business", "flat", "weekend")
PLAN_PROVIDERS = ("vast", "runpod", "lambda", "owned", "community")
DEFAULT_FLEET = "rtx4090:runpod:1:llama-3.1-8b-instruct"  # seed 001's first plan


@dataclass(frozen=True, slots=True)
class FleetEntry:
    gpu: str
    provider: str
    count: int
    model: str | None = None


@dataclass(frozen=True)
class SimPlan:
    days: float = 7.0
    models: tuple[str, ...] = ()  # empty: the models the fleet entries name, else the catalogue's defaults
    fleet: tuple[FleetEntry, ...] = ()
    demand: str = "business"  # a DEMAND_PROFILES name: the shape of a day and a week
    # Mean requests/s over the run at the market's middle price; None: `load` of the starting fleet.
    rate_rps: float | None = None
    load: float = 0.4  # without rate_rps: demand = this share of the starting fleet's capacity
    elasticity: float = 1.0  # demand ~ (price / market middle) ** -elasticity
    seed: int = 1
    start: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 5, tzinfo=dt.UTC))  # a Monday
    autoscale: bool | None = None  # None: the settings' [autoscaler] enabled
    dynamic_pricing: bool | None = None  # None: the settings' [pricing] enabled
    # Pinned prices for every model, USD per million tokens (prompt, completion), as decimal strings.
    pin: tuple[str, str] | None = None


def parse_fleet(text: str, catalogue: Catalogue) -> tuple[FleetEntry, ...]:
    """`gpu:provider:count[:model],...` -> entries; a FieldError("fleet", ...) naming what is wrong."""
    entries = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        parts = raw.split(":")
        if len(parts) not in (3, 4):
            raise FieldError("fleet", f"{raw!r}: expected gpu:provider:count[:model], e.g. rtx4090:vast:2")
        gpu, provider, count_s = parts[:3]
        model = parts[3] if len(parts) == 4 else None
        if gpu not in catalogue.gpu_by_id:
            raise FieldError("fleet", f"{raw!r}: unknown GPU {gpu!r}; the catalogue lists "
                                      f"{', '.join(catalogue.gpu_by_id)}")
        if provider not in PLAN_PROVIDERS:
            raise FieldError("fleet", f"{raw!r}: unknown provider {provider!r}; expected one of "
                                      f"{', '.join(PLAN_PROVIDERS)}")
        if provider in ("vast", "runpod", "lambda") and not any(
                o.provider == provider and o.gpu == gpu for o in catalogue.offers):
            sellers = sorted({o.provider for o in catalogue.offers if o.gpu == gpu})
            raise FieldError("fleet", f"{raw!r}: the catalogue has no {provider} offer of {gpu}"
                                      + (f"; {', '.join(sellers)} sell it" if sellers else
                                         "; no provider in the catalogue sells it (use owned or community)"))
        if not count_s.isdigit() or not 1 <= int(count_s) <= 1000:
            raise FieldError("fleet", f"{raw!r}: count must be a whole number from 1 to 1000, got {count_s!r}")
        if model is not None and model not in catalogue.model_by_id:
            raise FieldError("fleet", f"{raw!r}: unknown model {model!r}")
        entries.append(FleetEntry(gpu, provider, int(count_s), model))
    if not entries:
        raise FieldError("fleet", "no hosts: give at least one gpu:provider:count entry")
    return tuple(entries)
