"""The Autoscaler: every `[autoscaler] interval_s`, per model, the policy's decision (policy.py)
from its load, carried out through the fleet and the Provisioner.

- scale up: resume a host the autoscaler itself drained for this model (free), else rent the
  cheapest fitting offer through the Provisioner (within the fleet's budget per hour);
- scale down: the least valuable idle replica (rented before owned before community hosts,
  the costliest first; never a host with requests outstanding) is drained; a host tokenmill
  provisioned is then torn down once idle; community hosts and hosts tokenmill did not provision
  are only drained (the autoscaler stops routing to them and may resume them later).

The models it looks after: those the fleet serves, those the operator set scaling for, those
being provisioned and those it drained. Off (altogether, or for a model): desired replicas are
still computed and shown, and nothing is done. Every decision other than a plain hold is an
event `autoscale.<action>` with its reason; the latest are kept for GET /admin/autoscaler.

A host this drained is remembered through the fleet (drain_by "autoscaler"), which forgets it at
a restart: such a drain then counts as the operator's, and stays until the operator resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field, replace

from msgspec import UNSET
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.autoscaler.policy import (
    Decision,
    ModelView,
    OfferChoice,
    Streak,
    Supply,
    Thresholds,
    blocked,
    decide,
    next_action,
)
from backend.autoscaler.tables import ModelScaling
from backend.catalogue import Catalogue
from backend.fleet.models import ModelBook
from backend.fleet.providers.errors import label
from backend.fleet.registry import Fleet, FleetError, HostState
from backend.metrics.load import LOAD_LOOP, LoadTracker
from backend.provision.hosts import HostRecord
from backend.provision.service import Provisioner, RequestError
from backend.runtime.bus import EventBus
from backend.runtime.supervisor import Supervisor
from backend.settings import Settings
from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, ScalingDecisionOut, SetModelScaling
from backend.wire.provision import OfferOut, ProvisionRequest

log = logging.getLogger(__name__)

DECIDE_LOOP = "autoscaler.decide"
RECENT = 200  # decisions kept for the admin API
MAX_REPLICAS = 1000  # per model: a bound on what the operator may type, far above any fleet's size
IDLE_POLL_S = 0.2  # how often a released host is looked at until its last request is done
# provisioned_host states whose machine may still be there (and bill).
LIVE_RECORDS = ("provisioning", "serving", "failed", "interrupted", "tearing_down")


class ScalingError(ValueError):
    """A scaling change refused; `status` and `param` as the API answers them."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_value",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


@dataclass(frozen=True, slots=True)
class Override:
    enabled: bool = True
    min_replicas: int | None = None
    max_replicas: int | None = None


@dataclass(slots=True)
class _ModelState:
    streak: Streak = field(default_factory=Streak)
    last: ScalingDecisionOut | None = None


def is_community(host: HostState) -> bool:
    return host.payout_share_bps > 0 or host.provider == "community"


class Autoscaler:
    def __init__(self, settings: Settings, engine: AsyncEngine, catalogue: Catalogue, fleet: Fleet,
                 models: ModelBook, load: LoadTracker, provisioner: Provisioner, events: EventBus, *,
                 supervisor: Supervisor | None = None) -> None:
        self.settings, self._engine, self.catalogue, self.fleet = settings, engine, catalogue, fleet
        self.models, self.load, self.provisioner, self.events = models, load, provisioner, events
        self.clock = fleet.clock
        self._overrides: dict[str, Override] = {}
        self._state: dict[str, _ModelState] = {}
        self._renting: dict[str, tuple[str, int]] = {}  # job id -> (model, price per hour): rentals it started
        self._releasing: dict[str, asyncio.Task] = {}  # host id -> waiting for it to go idle, then tearing it down
        self.recent: deque[ScalingDecisionOut] = deque(maxlen=RECENT)
        self._supervisor = supervisor
        self._closed = False
        if supervisor is not None:
            supervisor.every(DECIDE_LOOP, self.decide, settings.autoscaler.interval_s, after=(LOAD_LOOP,),
                             describe=f"every {settings.autoscaler.interval_s:g}s: replicas per model from load")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        async with self._engine.connect() as conn:
            for r in (await conn.execute(select(ModelScaling.__table__))).mappings():
                self._overrides[r["model"]] = Override(bool(r["enabled"]), r["min_replicas"], r["max_replicas"])

    async def close(self) -> None:
        self._closed = True  # its loop stops after this (with the supervisor's): no new rental or release
        tasks = list(self._releasing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ what it sees
    def limits(self, model: str) -> tuple[int, int, bool]:
        """min, max replicas of `model`, and whether the operator set either."""
        a, o = self.settings.autoscaler, self._overrides.get(model, Override())
        lo = a.min_replicas if o.min_replicas is None else o.min_replicas
        hi = a.max_replicas if o.max_replicas is None else o.max_replicas
        return lo, hi, o.min_replicas is not None or o.max_replicas is not None

    def _pending_jobs(self, model: str | None = None) -> list:
        return [j for j in self.provisioner.jobs.all()
                if j.kind == "provision" and not j.finished and (model is None or j.model == model)]

    def _drained(self, model: str | None = None) -> list[HostState]:
        """Hosts the autoscaler drained (serving `model`), still enrolled."""
        return [h for h in self.fleet.hosts() if h.state == "draining" and h.drain_by == "autoscaler"
                and (model is None or model in h.replicas)]

    def managed(self) -> list[str]:
        ids = set(self.fleet.served_models()) | set(self._overrides)
        ids |= {j.model for j in self._pending_jobs() if j.model}
        ids |= {m for h in self._drained() for m in h.replicas}
        return sorted(m for m in ids if m in self.catalogue.model_by_id)

    def _actual(self, model: str) -> int:
        return sum(1 for r in self.fleet.replicas(model) if self.fleet.routable_now(r))

    def _pending(self, model: str) -> int:
        """Replicas on their way: provisioning jobs, and replicas of hosts up and in rotation that
        have yet to report their first hardware check (a host that just joined)."""
        checking = sum(1 for r in self.fleet.replicas(model) if r.check is None and r.host.state == "active"
                       and self.fleet.is_up(r.host) and self.provisioner.jobs.active_for_host(r.host.id) is None)
        return len(self._pending_jobs(model)) + checking

    def _view(self, model: str) -> tuple[ModelView, float | None, float]:
        """The policy's view of `model`, its utilization and waiting requests per replica."""
        a = self.settings.autoscaler
        ml = self.load.load(model, a.window_s)
        known = ml.samples > 0 and (ml.utilization is not None or ml.demand_ratio is not None)
        lo, hi, _ = self.limits(model)
        off = ("the autoscaler is off ([autoscaler] enabled = false)" if not a.enabled
               else "scaling is off for this model" if not self._overrides.get(model, Override()).enabled
               else "the model is withdrawn from clients" if not self.models.enabled(model) else "")
        signal = "utilization" if ml.demand_ratio is None or self.settings.pricing.utilization_weight >= 1 else "load"
        view = ModelView(model, ml.combined(self.settings.pricing.utilization_weight) if known else None,
                         ml.waiting_per_replica, self._actual(model), self._pending(model), lo, hi,
                         enabled=not off, off_reason=off or "off", signal=signal)
        return view, ml.utilization, ml.waiting_per_replica

    async def _records(self) -> dict[str, HostRecord]:
        return {r.host_id: r for r in await self.provisioner.records.in_state(*LIVE_RECORDS)}

    def _spend(self, records: dict[str, HostRecord]) -> int:
        """What rented hosts and the rentals it started cost per hour now."""
        total, counted = 0, set()
        for rec in records.values():
            if not rec.rented:
                continue
            with contextlib.suppress(FleetError):
                host = self.fleet.host(rec.host_id)
                if host.state != "removed":
                    total += host.cost_per_hour
                    counted.add(host.id)
        for job_id, (_model, price) in self._renting.items():
            job = self.provisioner.jobs.get(job_id)
            if job is not None and not job.finished and job.host_id not in counted:
                total += price
        return total

    def _forget_finished_rentals(self) -> None:
        """Rentals it started that ended; a failed one is said (the want stands: it is tried again
        after upscale_delay decisions, as any want)."""
        for job_id, (model, _price) in list(self._renting.items()):
            job = self.provisioner.jobs.get(job_id)
            if job is None or job.finished:
                del self._renting[job_id]
            if job is not None and job.state == "failed":
                error = (job.error or "no error given").splitlines()[0]
                self.events.add("autoscale.blocked", model, f"{model}: renting a replica failed ({job.id}): {error}",
                                "warning")

    def _waiting_for_key(self, model: str, d: Decision) -> Decision:
        """A hold while a rental for `model` waits for the operator to confirm its host key: blocked, saying so."""
        job = next((j for j in self._pending_jobs(model) if j.state == "waiting_host_key"), None)
        if d.action != "hold" or job is None:
            return d
        return replace(d, action="blocked", reason=f"{d.reason}; {job.id} waits for the operator to confirm the host "
                                                   f"key of {job.host_name or job.address} (in the console; or "
                                                   f"[autoscaler] host_keys = \"trust_new_instance\")")

    # ------------------------------------------------------------------ deciding
    async def decide(self) -> list[ScalingDecisionOut]:
        """One decision per model, carried out; returns them (holds included)."""
        if self._closed:
            return []
        th = Thresholds.of(self.settings.autoscaler)
        self._forget_finished_rentals()
        plans: dict[str, tuple[ModelView, Decision]] = {}
        for model in self.managed():
            view = self._view(model)[0]
            d = decide(view, self._state.setdefault(model, _ModelState()).streak, th, None)
            plans[model] = view, self._waiting_for_key(model, d)
        acting = any(d.action in ("scale_up", "scale_down") for _, d in plans.values())
        records = await self._records() if acting else {}  # a database read only when there is something to do
        spend = self._spend(records)
        desired_of = {m: d.desired for m, (_, d) in plans.items()}
        out = []
        for model, (view, d) in plans.items():
            host_id = job_id = None
            try:
                if d.action == "scale_up":
                    d, host_id, job_id, spend = await self._scale_up(view, th, spend)
                elif d.action == "scale_down":
                    d, host_id = await self._scale_down(model, d, records, desired_of)
            except Exception as exc:  # one model's failure must not stop the others' decisions
                log.exception("autoscaler: acting on %s failed", model)
                d = blocked(d, f"internal error: {exc!r}")
            out.append(self._note(model, view, d, host_id, job_id))
        return out

    async def _scale_up(self, view: ModelView, th: Thresholds,
                        spend: int) -> tuple[Decision, str | None, str | None, int]:
        model, st = view.model, self._state[view.model]
        a = self.settings.autoscaler
        drained = [h for h in self._drained(model) if self.fleet.is_up(h) and h.id not in self._releasing
                   and self.provisioner.jobs.active_for_host(h.id) is None]
        resume = max(drained, key=lambda h: h.created_us, default=None)
        supply = Supply(a.budget_nano, spend, resumable=resume.name if resume is not None else None,
                        min_profit_per_hour_nano=a.min_profit_nano)
        offer: OfferOut | None = None
        if resume is None:
            supply, offer = await self._offer(view, supply)
        d = decide(view, st.streak, th, supply)
        if d.action != "scale_up":
            return d, None, None, spend
        if resume is not None:
            await self.fleet.resume(resume, by="autoscaler")
            return d, resume.id, None, spend
        assert offer is not None
        try:
            job = await self.provisioner.provision(ProvisionRequest(
                model=model, provider=offer.provider, offer_id=offer.offer_id, gpu=offer.gpu,
                engine="sim" if offer.provider == "local" else "vllm",
                trust_new_host_key=a.host_keys == "trust_new_instance", reason=d.reason))
        except RequestError as exc:
            return blocked(d, exc.message), None, None, spend
        self._renting[job.id] = (model, offer.price_per_hour_nano)
        return d, job.host_id, job.id, spend + offer.price_per_hour_nano

    async def _offer(self, view: ModelView, supply: Supply) -> tuple[Supply, OfferOut | None]:
        """`supply` with the cheapest fitting offer (or why there is none) and its expected profit; the offer."""
        model, providers = view.model, self.settings.autoscaler.providers
        try:
            if providers:
                answers = await asyncio.gather(*(self.provisioner.offers(model, only=p) for p in providers))
                offers = sorted((o for ans in answers for o in ans.offers), key=lambda o: o.price_per_hour_nano)
                unavailable = [u for ans in answers for u in ans.unavailable]
            else:
                ans = await self.provisioner.offers(model)
                offers, unavailable = ans.offers, ans.unavailable
        except RequestError as exc:
            return replace(supply, no_offer=exc.message), None
        if not offers:
            why = f"no offer fits {model}" + (f" ({'; '.join(unavailable)})" if unavailable else "")
            return replace(supply, no_offer=why), None
        best: OfferOut = offers[0]
        demand = await self.provisioner.demand(model)
        # What one more replica would earn: the model's margin at current demand, shared by all its replicas.
        profit = None if demand is None else demand // (view.actual + view.pending + 1) - best.price_per_hour_nano
        return replace(supply, offer=OfferChoice(label(best.provider), best.gpu_name, best.price_per_hour_nano,
                                                 profit)), best

    async def _scale_down(self, model: str, d: Decision, records: dict[str, HostRecord],
                          desired_of: dict[str, int]) -> tuple[Decision, str | None]:
        host = self._least_valuable(model, records, desired_of)
        if host is None:
            return blocked(d, "no replica can go now (each is being provisioned, released or needed by another "
                              "model)"), None
        await self.fleet.drain(host, by="autoscaler")
        rec = records.get(host.id)
        if rec is not None and not is_community(host):
            self._releasing[host.id] = asyncio.create_task(self._teardown_when_idle(host, d.reason),
                                                           name=f"autoscaler-release-{host.id}")
        return d, host.id

    def _least_valuable(self, model: str, records: dict[str, HostRecord],
                        desired_of: dict[str, int]) -> HostState | None:
        ranked: list[tuple[bool, int, int, int, str]] = []
        for rep in self.fleet.replicas(model):
            h = rep.host
            if (not self.fleet.routable_now(rep) or h.id in self._releasing
                    or self.provisioner.jobs.active_for_host(h.id) is not None):
                continue
            # A host serving other models goes only if each of them keeps what it needs.
            if any(other != model and self.fleet.routable_now(r)
                   and self._actual(other) - 1 < desired_of.get(other, self.limits(other)[0])
                   for other, r in h.replicas.items()):
                continue
            rec = records.get(h.id)
            rank = 2 if is_community(h) else 0 if rec is not None and rec.rented else 1
            # An idle host first; a busy one is drained all the same (a replica of a model in steady
            # use is never idle at the instant of a decision, and would never be released), and torn
            # down only once its requests are finished (_teardown_when_idle).
            busy = bool(h.outstanding or h.in_flight)
            ranked.append((busy, rank, -h.cost_per_hour, -h.created_us, h.id))
        return self.fleet.host(min(ranked)[4]) if ranked else None

    async def _teardown_when_idle(self, host: HostState, reason: str) -> None:
        try:
            deadline = self.clock.monotonic() + self.settings.teardown_drain_timeout_s
            while host.outstanding > 0 and self.clock.monotonic() < deadline:
                await self.clock.sleep(IDLE_POLL_S)
            if host.state != "draining" or host.drain_by != "autoscaler":
                return  # resumed or removed meanwhile: not ours to release any more
            try:
                await self.provisioner.teardown(host.id, reason=reason)
            except RequestError as exc:
                self.events.add("autoscale.scale_down", host.id, f"could not tear down {host.name}: {exc.message}; "
                                                                 f"it stays drained", "warning")
        finally:
            self._releasing.pop(host.id, None)

    def _note(self, model: str, view: ModelView, d: Decision, host_id: str | None,
              job_id: str | None) -> ScalingDecisionOut:
        st = self._state.setdefault(model, _ModelState())
        prev, st.streak = st.last, d.streak
        out = ScalingDecisionOut(self.clock.now_us(), model, d.action, d.reason, d.desired, view.actual,
                                 host_id, job_id)
        st.last = out
        quiet = d.action == "hold" or (d.action == "off" and (d.want is None or (prev is not None
                                                                                  and prev.action == "off")))
        if not quiet:
            self.recent.appendleft(out)
            self.events.add(f"autoscale.{d.action}", model, d.reason, "warning" if d.action == "blocked" else "info")
        return out

    # ------------------------------------------------------------------ the admin API
    async def out(self) -> AutoscalerOut:
        a = self.settings.autoscaler
        spend = self._spend(await self._records())
        return AutoscalerOut(a.enabled, a.interval_s, a.upper_threshold, a.lower_threshold, a.target_utilization,
                             a.upscale_delay, a.downscale_delay, a.budget_nano, spend, a.host_keys,
                             [self.model_out(m) for m in self.managed()], list(self.recent),
                             min_profit_per_hour_nano=a.min_profit_nano)

    def model_out(self, model: str) -> ModelScalingOut:
        th = Thresholds.of(self.settings.autoscaler)
        view, utilization, waiting = self._view(model)
        st = self._state.get(model) or _ModelState()
        d = decide(view, st.streak, th, None)  # what the next decision would do if the load stays so
        lo, hi, overridden = self.limits(model)
        next_us = None
        if self._supervisor is not None:
            with contextlib.suppress(KeyError):
                next_us = self._supervisor.info(DECIDE_LOOP).next_run_us
        draining = len(self._drained(model))
        return ModelScalingOut(model, view.enabled, lo, hi, overridden, view.actual, view.pending, draining,
                               d.desired, view.load, utilization, waiting, st.streak.up, st.streak.down, next_us,
                               next_action(d, th), st.last, next=d.action,
                               model_enabled=self._overrides.get(model, Override()).enabled)

    async def set_scaling(self, model: str, change: SetModelScaling) -> ModelScalingOut:
        if model not in self.catalogue.model_by_id:
            raise ScalingError(f"no model {model!r} in the catalogue", status=404, code="model_not_found")
        a, cur = self.settings.autoscaler, self._overrides.get(model, Override())
        enabled = cur.enabled if change.enabled is UNSET else change.enabled
        lo = cur.min_replicas if change.min_replicas is UNSET else change.min_replicas
        hi = cur.max_replicas if change.max_replicas is UNSET else change.max_replicas
        if lo is not None and not 0 <= lo <= MAX_REPLICAS:
            raise ScalingError(f"min_replicas must be 0 to {MAX_REPLICAS}, got {lo}", param="min_replicas")
        if hi is not None and not 1 <= hi <= MAX_REPLICAS:
            raise ScalingError(f"max_replicas must be 1 to {MAX_REPLICAS}, got {hi}", param="max_replicas")
        eff_lo = a.min_replicas if lo is None else lo
        eff_hi = a.max_replicas if hi is None else hi
        if eff_lo > eff_hi:
            param = "min_replicas" if change.min_replicas is not UNSET else "max_replicas"
            raise ScalingError(f"{param}: min_replicas {eff_lo} would exceed max_replicas {eff_hi}", param=param)
        t = ModelScaling.__table__
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.model == model))
            await conn.execute(insert(t).values(model=model, enabled=enabled, min_replicas=lo, max_replicas=hi,
                                                updated_us=self.clock.now_us()))
        self._overrides[model] = Override(bool(enabled), lo, hi)
        self.events.add("autoscale.limits", model, f"{model}: scaling {'on' if enabled else 'off'}, {eff_lo} to "
                                                   f"{eff_hi} replicas (set by the operator)")
        return self.model_out(model)
