"""The pricing engine: a supervised loop that reprices each model from its load (policy.py), the
operator's pins and ranges, and the record of every change (table price_change).

- At start (`load`) each model's price is the latest in price_change (a restart keeps prices), its
  pin if pinned, or its list price if it was never priced. A model's first recorded change is
  preceded by a "start" row holding the price it had until then (its list price), so its history
  always says what it cost before.
- Every `interval_s` ("pricing.update", after "metrics.load") each enabled, unpinned model with
  something to price from (routable replicas, or demand) gets its next price. A model with neither
  keeps its price: there is no load to read, and nobody can buy it now.
- A change: a row in price_change, then the Pricer's Quote replaced (one dict assignment: a request
  in flight keeps the Quote it snapshotted; the hot path stays one dict lookup), then an event.
- `[pricing] enabled = false`: every unpinned model back at its list price (source "list").
- The operator pins a price or sets a range of its own (`set_pricing`): a row and an event each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import msgspec
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.catalogue import Catalogue, ModelEntry
from backend.field_errors import FieldError
from backend.fleet.models import ModelBook
from backend.metrics.load import LOAD_LOOP, LoadTracker, ModelLoad
from backend.money import MAX_PRICE_NANO, MoneyError, format_usd, parse_usd
from backend.pricing.policy import Bounds, Prices, hour_of, next_prices
from backend.pricing.quote import Pricer, Quote
from backend.pricing.tables import ModelPricing, PriceChange
from backend.runtime.bus import EventBus
from backend.runtime.clock import Clock
from backend.runtime.supervisor import Supervisor
from backend.settings import Settings
from backend.wire.pricing import (
    ModelPricingOut,
    PriceChangeOut,
    PriceFactorOut,
    PriceSource,
    PricingOut,
    SetModelPricing,
)

log = logging.getLogger(__name__)

UPDATE_LOOP = "pricing.update"
_FACTORS = msgspec.json.Decoder(list[PriceFactorOut])


class UnknownModel(LookupError):
    """No such model in the catalogue (404)."""


@dataclass(slots=True)
class Override:
    """The operator's word on one model (table model_pricing); None: not set (the catalogue's range)."""

    pinned: bool = False
    pin_prompt: int | None = None
    pin_completion: int | None = None
    floor_prompt: int | None = None
    floor_completion: int | None = None
    ceiling_prompt: int | None = None
    ceiling_completion: int | None = None

    @property
    def range_overridden(self) -> bool:
        return any(v is not None for v in (self.floor_prompt, self.floor_completion, self.ceiling_prompt,
                                           self.ceiling_completion))


def _change_out(r) -> PriceChangeOut:
    return PriceChangeOut(r.model, r.at_us, r.prompt_per_mtok, r.completion_per_mtok, format_usd(r.prompt_per_mtok),
                          format_usd(r.completion_per_mtok), r.source, r.explanation, _FACTORS.decode(r.factors))


class PricingEngine:
    def __init__(self, settings: Settings, engine: AsyncEngine, catalogue: Catalogue, models: ModelBook,
                 pricer: Pricer, load: LoadTracker, bus: EventBus, clock: Clock,
                 supervisor: Supervisor | None = None) -> None:
        # The whole Settings: `settings.pricing` is read at each run, so turning pricing off takes effect.
        self.settings, self._engine, self.catalogue, self.models = settings, engine, catalogue, models
        self.pricer, self.load_tracker, self.bus, self.clock = pricer, load, bus, clock
        self.supervisor = supervisor
        self._overrides: dict[str, Override] = {}
        self._recent: dict[str, deque[PriceChangeOut]] = {}  # the last two changes per model
        self._priced: dict[str, ModelLoad] = {}  # the load each model was last priced from
        self._lock = asyncio.Lock()  # the loop and the operator never change one model at once
        if supervisor is not None:
            supervisor.every(UPDATE_LOOP, self.update, settings.pricing.interval_s, after=(LOAD_LOOP,),
                             describe=f"every {settings.pricing.interval_s:g}s: reprices each model from its load")

    # ------------------------------------------------------------------ start
    async def load(self) -> None:
        """Each model's price and the operator's overrides from the database (before the proxy serves)."""
        pt, ct = ModelPricing.__table__, PriceChange.__table__
        async with self._engine.connect() as conn:
            for r in (await conn.execute(select(pt))).mappings():
                self._overrides[r["model"]] = Override(
                    bool(r["pinned"]), r["pin_prompt_per_mtok"], r["pin_completion_per_mtok"],
                    r["floor_prompt_per_mtok"], r["floor_completion_per_mtok"], r["ceiling_prompt_per_mtok"],
                    r["ceiling_completion_per_mtok"])
            for m in self.catalogue.models:
                rows = (await conn.execute(select(ct).where(ct.c.model == m.id)
                                           .order_by(ct.c.at_us.desc(), ct.c.id.desc()).limit(2))).all()
                if rows:
                    self._recent[m.id] = deque((_change_out(r) for r in reversed(rows)), maxlen=2)
                    last = rows[0]
                    self.pricer.set(Quote(m.id, last.prompt_per_mtok, last.completion_per_mtok))
                o = self._overrides.get(m.id)
                if o is not None and o.pinned and o.pin_prompt is not None and o.pin_completion is not None:
                    self.pricer.set(Quote(m.id, o.pin_prompt, o.pin_completion))
        if not self.settings.pricing.enabled:
            await self.update()  # back to list prices now, not one interval after the proxy serves

    # ------------------------------------------------------------------ the loop
    async def update(self) -> None:
        """Reprice every model once (the supervised loop's body)."""
        p = self.settings.pricing
        for m in self.catalogue.models:
            async with self._lock:
                if self._override(m.id).pinned:
                    continue
                now = self.clock.now_us()
                prev = self.current(m)
                if not p.enabled:
                    listed = Prices(m.price.prompt, m.price.completion)
                    if prev != listed:
                        await self._record(m, listed, "list", "dynamic pricing is off: back to the list price", [],
                                           "price.changed", now)
                    continue
                if not self.models.enabled(m.id):
                    continue  # withdrawn from clients: nothing to sell
                load = self.load_tracker.load(m.id, p.window_s)
                if load.replicas == 0 and load.demand_tps == 0:
                    continue  # nothing to price from
                if load.utilization is None and load.demand_ratio is None:
                    continue  # served, but no engine reports its load and its capacity is unknown: no signal
                self._priced[m.id] = load
                prompt, completion = self.bounds(m)
                d = next_prices(load, hour_utc=hour_of(now), prompt=prompt, completion=completion, prev=prev,
                                params=p, last_move=self._last_move(m.id))
                if d.changed(prev):
                    await self._record(m, d.prices, "engine", d.explanation, d.factors, "price.changed", now)

    # ------------------------------------------------------------------ reads
    def _last_move(self, model_id: str) -> int:
        """+1 / -1: the direction of the model's last change by this engine; 0 when it is not one."""
        recent = self._recent.get(model_id)
        if not recent or len(recent) < 2 or recent[-1].source != "engine":
            return 0
        a, b = recent[-2], recent[-1]
        delta = ((b.completion_per_mtok_nano - a.completion_per_mtok_nano)
                 or (b.prompt_per_mtok_nano - a.prompt_per_mtok_nano))
        return (delta > 0) - (delta < 0)

    def _override(self, model_id: str) -> Override:
        return self._overrides.get(model_id) or Override()

    def _entry(self, model_id: str) -> ModelEntry:
        m = self.catalogue.model_by_id.get(model_id)
        if m is None:
            raise UnknownModel(f"no model {model_id!r} in the catalogue")
        return m

    def current(self, m: ModelEntry) -> Prices:
        q = self.pricer.quote(m)
        return Prices(q.prompt_per_mtok, q.completion_per_mtok)

    def quote(self, model_id: str) -> Quote:
        """The price a request for the model is quoted now (UnknownModel if there is no such model)."""
        return self.pricer.quote(self._entry(model_id))

    def bounds(self, m: ModelEntry) -> tuple[Bounds, Bounds]:
        """The range each side is priced in: the operator's floor and ceiling, else the market's."""
        o = self._override(m.id)

        def pick(own: int | None, market: int) -> int:
            return market if own is None else own

        return (Bounds(pick(o.floor_prompt, m.market.prompt_min), pick(o.ceiling_prompt, m.market.prompt_max)),
                Bounds(pick(o.floor_completion, m.market.completion_min),
                       pick(o.ceiling_completion, m.market.completion_max)))

    def state(self, model_id: str) -> ModelPricingOut:
        """One model's pricing now (UnknownModel if there is no such model)."""
        m = self._entry(model_id)
        o = self._override(m.id)
        now = self.current(m)
        prompt, completion = self.bounds(m)
        recent = self._recent.get(m.id) or ()
        last = recent[-1] if recent else None
        trend = "flat"
        if len(recent) == 2:
            move = (recent[1].prompt_per_mtok_nano - recent[0].prompt_per_mtok_nano
                    + recent[1].completion_per_mtok_nano - recent[0].completion_per_mtok_nano)
            trend = "up" if move > 0 else "down" if move < 0 else "flat"
        seen = self._priced.get(m.id)
        dynamic = self.settings.pricing.enabled and not o.pinned
        nxt = None
        if dynamic and self.supervisor is not None:
            try:
                nxt = self.supervisor.info(UPDATE_LOOP).next_run_us
            except KeyError:
                nxt = None
        return ModelPricingOut(
            m.id, dynamic, o.pinned, now.prompt, now.completion, format_usd(now.prompt), format_usd(now.completion),
            m.price.prompt, m.price.completion, prompt.floor, completion.floor, prompt.ceiling, completion.ceiling,
            o.range_overridden, trend, last, seen.combined(self.settings.pricing.utilization_weight) if seen else None,
            seen.utilization if seen else None, seen.demand_tps if seen else None, seen.capacity_tps if seen else None,
            seen.replicas if seen else len(self.load_tracker.routable(m.id)), nxt)

    def overview(self) -> PricingOut:
        p = self.settings.pricing
        return PricingOut(p.enabled, p.interval_s, p.target_utilization, list(p.peak_hours),
                          hour_of(self.clock.now_us()) in p.peak_hours,
                          [self.state(m.id) for m in self.catalogue.models])

    async def history(self, model_id: str, from_us: int, to_us: int) -> list[PriceChangeOut]:
        """The price in force at from_us (if any) first, then every change up to to_us, oldest first."""
        self._entry(model_id)
        ct = PriceChange.__table__
        async with self._engine.connect() as conn:
            before = (await conn.execute(select(ct).where(ct.c.model == model_id, ct.c.at_us <= from_us)
                                         .order_by(ct.c.at_us.desc(), ct.c.id.desc()).limit(1))).all()
            after = (await conn.execute(select(ct).where(ct.c.model == model_id, ct.c.at_us > from_us,
                                                         ct.c.at_us <= to_us)
                                        .order_by(ct.c.at_us, ct.c.id))).all()
        return [_change_out(r) for r in (*before, *after)]

    # ------------------------------------------------------------------ the operator
    async def set_pricing(self, model_id: str, change: SetModelPricing) -> ModelPricingOut:
        """Pin or unpin a model's price, or set its range ("" = the catalogue's again). FieldError
        naming the field for a bad value; UnknownModel for no such model."""
        m = self._entry(model_id)
        async with self._lock:
            old = self._override(m.id)
            new = Override(old.pinned, old.pin_prompt, old.pin_completion, old.floor_prompt, old.floor_completion,
                           old.ceiling_prompt, old.ceiling_completion)
            for side in ("prompt", "completion"):
                for edge in ("floor", "ceiling"):
                    value = getattr(change, f"{edge}_{side}_usd")
                    if isinstance(value, str):
                        setattr(new, f"{edge}_{side}", None if value == "" else _price(f"{edge}_{side}_usd", value))
            if isinstance(change.pinned, bool):
                new.pinned = change.pinned
            current = self.current(m)
            for side in ("prompt", "completion"):
                value = getattr(change, f"{side}_usd")
                if isinstance(value, str):
                    if not new.pinned:
                        raise FieldError(f"{side}_usd", "a price is set only by pinning it (pinned: true)")
                    setattr(new, f"pin_{side}", _price(f"{side}_usd", value, allow_zero=False))
                elif new.pinned and not old.pinned:  # pinned now: at the price it has, unless given
                    setattr(new, f"pin_{side}", getattr(current, side))
            if not new.pinned:
                new.pin_prompt = new.pin_completion = None
            self._check_range(m, new, change)
            await self._save_override(m.id, new)
            self._overrides[m.id] = new
            await self._after_override(m, old, new, current)
        return self.state(m.id)

    def _check_range(self, m: ModelEntry, o: Override, change: SetModelPricing) -> None:
        saved, self._overrides[m.id] = self._overrides.get(m.id), o
        try:
            bounds = dict(zip(("prompt", "completion"), self.bounds(m), strict=True))
        finally:
            if saved is None:
                del self._overrides[m.id]
            else:
                self._overrides[m.id] = saved
        for side, b in bounds.items():
            if b.floor > b.ceiling:
                given = f"floor_{side}_usd" if isinstance(getattr(change, f"floor_{side}_usd"), str) \
                    else f"ceiling_{side}_usd"
                raise FieldError(given, f"the {side} floor {format_usd(b.floor)} is above its ceiling "
                                        f"{format_usd(b.ceiling)}")

    async def _after_override(self, m: ModelEntry, old: Override, new: Override, current: Prices) -> None:
        now = self.clock.now_us()
        if new.pinned:
            assert new.pin_prompt is not None and new.pin_completion is not None
            pin = Prices(new.pin_prompt, new.pin_completion)
            if not old.pinned or pin != current:
                await self._record(m, pin, "pin", f"pinned by the operator at {format_usd(pin.prompt, places=4)} "
                                   f"prompt, {format_usd(pin.completion, places=4)} completion per 1M tokens", [],
                                   "price.pinned", now)
                return
        elif old.pinned:
            # Dynamic again from where it is, or back at the list price when pricing is off.
            to = current if self.settings.pricing.enabled else Prices(m.price.prompt, m.price.completion)
            await self._record(m, to, "unpin", "unpinned by the operator: "
                               + ("the engine prices it again" if self.settings.pricing.enabled
                                  else "dynamic pricing is off, so its list price"), [], "price.unpinned", now)
            return
        if (new.floor_prompt, new.floor_completion, new.ceiling_prompt, new.ceiling_completion) != \
                (old.floor_prompt, old.floor_completion, old.ceiling_prompt, old.ceiling_completion):
            prompt, completion = self.bounds(m)
            # A pinned price stays; a dynamic one outside the new range is brought inside at once.
            to = current if new.pinned else Prices(min(max(current.prompt, prompt.floor), prompt.ceiling),
                                                   min(max(current.completion, completion.floor), completion.ceiling))
            await self._record(m, to, "range", f"range set by the operator: prompt {_range(prompt)}, completion "
                               f"{_range(completion)}" + ("" if new.range_overridden else " (the market's)"), [],
                               "price.range", now)

    async def _save_override(self, model_id: str, o: Override) -> None:
        t = ModelPricing.__table__
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.model == model_id))
            await conn.execute(insert(t).values(
                model=model_id, pinned=o.pinned, pin_prompt_per_mtok=o.pin_prompt,
                pin_completion_per_mtok=o.pin_completion, floor_prompt_per_mtok=o.floor_prompt,
                floor_completion_per_mtok=o.floor_completion, ceiling_prompt_per_mtok=o.ceiling_prompt,
                ceiling_completion_per_mtok=o.ceiling_completion, updated_us=self.clock.now_us()))

    # ------------------------------------------------------------------ recording
    async def _record(self, m: ModelEntry, prices: Prices, source: PriceSource, explanation: str,
                      factors: list[PriceFactorOut], kind: str, at_us: int) -> None:
        """Write the change, then quote it, then say so: what was quoted is always on record."""
        recent = self._recent.setdefault(m.id, deque(maxlen=2))
        async with self._engine.begin() as conn:
            if not recent:  # the first change this database sees: what it cost until now first
                before = self.current(m)
                recent.append(await self._insert(conn, m.id, at_us, before, "start",
                                                 "the price before its first recorded change", []))
            recent.append(await self._insert(conn, m.id, at_us, prices, source, explanation, factors))
        self.pricer.set(Quote(m.id, prices.prompt, prices.completion))
        self.bus.add(kind, m.id, f"{m.id}: {explanation}")

    @staticmethod
    async def _insert(conn: AsyncConnection, model: str, at_us: int, p: Prices, source: PriceSource,
                      explanation: str, factors: list[PriceFactorOut]) -> PriceChangeOut:
        encoded = msgspec.json.encode(factors).decode()
        await conn.execute(insert(PriceChange.__table__).values(
            model=model, at_us=at_us, prompt_per_mtok=p.prompt, completion_per_mtok=p.completion, source=source,
            explanation=explanation, factors=encoded))
        return PriceChangeOut(model, at_us, p.prompt, p.completion, format_usd(p.prompt), format_usd(p.completion),
                              source, explanation, factors)


def _price(field: str, text: str, *, allow_zero: bool = True) -> int:
    try:
        return parse_usd(text, what=field, max_nano=MAX_PRICE_NANO, allow_zero=allow_zero)
    except MoneyError as exc:
        raise FieldError(field, str(exc).removeprefix(f"{field}: ")) from None


def _range(b: Bounds) -> str:
    return f"{format_usd(b.floor, places=4)}-{format_usd(b.ceiling, places=4)}"
