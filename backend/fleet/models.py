"""Which catalogue models are offered: every model is on unless the operator turned it off."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.catalogue import Catalogue, ModelEntry
from backend.fleet.tables import ModelSetting
from backend.runtime.bus import EventBus
from backend.runtime.clock import REAL_CLOCK, Clock


class ModelBook:
    def __init__(self, engine: AsyncEngine, catalogue: Catalogue, events: EventBus,
                 clock: Clock = REAL_CLOCK) -> None:
        self._engine = engine
        self.clock = clock
        self.catalogue = catalogue
        self._events = events
        self._disabled: set[str] = set()

    async def load(self) -> None:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(ModelSetting.__table__))).mappings()
            self._disabled = {r["model"] for r in rows if not r["enabled"]}

    def get(self, model_id: str) -> ModelEntry | None:
        """The model if it exists and is enabled (the hot path's check)."""
        if model_id in self._disabled:
            return None
        return self.catalogue.model_by_id.get(model_id)

    def enabled(self, model_id: str) -> bool:
        return model_id not in self._disabled

    async def set_enabled(self, model_id: str, enabled: bool) -> None:
        self.catalogue.model(model_id)  # KeyError naming the model if unknown
        table = ModelSetting.__table__
        async with self._engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.model == model_id))
            await conn.execute(insert(table).values(model=model_id, enabled=enabled, updated_us=self.clock.now_us()))
        if enabled:
            self._disabled.discard(model_id)
        else:
            self._disabled.add(model_id)
        self._events.add("model.enabled" if enabled else "model.disabled", model_id,
                         f"{model_id} {'available to clients' if enabled else 'withdrawn from clients'}")
