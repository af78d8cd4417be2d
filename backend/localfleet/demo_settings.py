"""The settings `tokenmill serve --local` runs the demo with: the autoscaler on and both loops
fast enough that prices move and hosts come and go within a few minutes of the traffic's wave
(traffic.py), on provider local (the simulated hosts this machine runs).

Only what the operator did not set explicitly (in the config file or the environment) changes:
pydantic's model_fields_set tells which fields of [pricing] and [autoscaler] were given.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ValidationError

from backend.settings import AutoscalerSettings, PricingSettings, Settings

log = logging.getLogger(__name__)

DEMO_PRICING: dict[str, object] = {"interval_s": 10.0, "window_s": 60.0}
DEMO_AUTOSCALER: dict[str, object] = {
    "enabled": True, "interval_s": 10.0, "window_s": 60.0, "upscale_delay": 3, "downscale_delay": 6,
    "min_replicas": 1, "max_replicas": 3, "providers": ["local"],
}
BOUNDS = ("min_replicas", "max_replicas")


def local_demo_settings(settings: Settings) -> Settings:
    """`settings` with the demo's pricing and autoscaler values where the operator set none (in place)."""
    settings.pricing = _merged(settings.pricing, DEMO_PRICING, PricingSettings)  # type: ignore[assignment]
    settings.autoscaler = _merged(settings.autoscaler, DEMO_AUTOSCALER, AutoscalerSettings)  # type: ignore[assignment]
    return settings


def _merged(current: BaseModel, demo: dict[str, object], kind: type[BaseModel]) -> BaseModel:
    chosen = current.model_fields_set
    values = {k: v for k, v in demo.items() if k not in chosen}
    if not values:
        return current
    # The operator's values may not fit the demo's (min_replicas 4 against the demo's max 3): then
    # the demo's bounds give way, and if it still does not fit, the operator's settings stand whole.
    attempts = [values, {k: v for k, v in values.items() if k not in BOUNDS}]
    for attempt in attempts:
        try:
            return kind.model_validate({**current.model_dump(), **attempt})
        except ValidationError as exc:
            problem = exc
    log.warning("the demo's %s values do not fit the operator's, which stand: %s", kind.__name__, problem)
    return current
