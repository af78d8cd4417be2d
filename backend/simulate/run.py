"""`tokenmill simulate`: days of the business on the production services, in seconds.

`Services.start` on a VirtualClock and a temporary SQLite ledger: the production pricing engine,
autoscaler, Provisioner (provider `local`, whose hosts are simulated agents: agents.py), replica
choice (Fleet.choose), settlement (Ledger, the host-share policy, Quote.cost), GPU cost meter and
load tracker run as they do in `tokenmill serve`; nothing in them knows it is simulated. What is
simulated: the engines (engines.py, the catalogue's capacity model with a queue) and the clients
(demand.py). Each minute, half a minute after the services' own loops, the clients' requests of
that minute are split into batches, each sent to the replica Fleet.choose picks; each replica
serves what its capacity allows; what it served is recorded in the live metrics and settled in the
ledger, a replica's requests of an hour at one price as one usage event (`requests` > 1), so that a
month of a fleet fits in a ledger. The report (report.py) reads the run's ledger and GPU meter
through the production queries.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from backend.app import Services
from backend.catalogue import Catalogue, load_catalogue
from backend.catalogue.capacity import replica_capacity
from backend.field_errors import FieldError
from backend.fleet.registry import HostState
from backend.ledger import chart
from backend.ledger.service import Usage
from backend.ledger.settlement_policy import host_share
from backend.money import parse_usd
from backend.pricing.quote import Quote
from backend.runtime.bus import Event
from backend.runtime.clock import VirtualClock, to_us
from backend.settings import Settings
from backend.simulate.agents import BOOT_S, SimHost, SimHosts
from backend.simulate.demand import MEAN_COMPLETION, MEAN_PROMPT, Demand
from backend.simulate.plan import DEFAULT_FLEET, FleetEntry, SimPlan, parse_fleet
from backend.simulate.result import SimResult
from backend.wire.pricing import SetModelPricing
from backend.wire.provision import ProvisionRequest

log = logging.getLogger(__name__)

MINUTE_US, HOUR_US, DAY_US = 60_000_000, 3_600_000_000, 86_400_000_000
STEP_S = 60.0
WARMUP_US = 20 * MINUTE_US  # the starting fleet is rented and booted before the first day begins
CREDIT_NANO = 10**17  # $100 million of prepaid credit, the most one transfer takes: never the limit
COMMUNITY_SHARE_BPS = 7_000  # a community host's share of what it earns (the operator keeps 30 %)
BATCHES_PER_REPLICA = 4  # each minute's requests reach the balancer in this many batches per replica


class SimulationError(RuntimeError):
    """The plan could not run; the message says why."""


@dataclass(frozen=True, slots=True)
class HostPlan:
    gpu: str
    gpu_count: int
    provider: str
    model: str
    cost_per_hour: int
    offer_id: str | None  # the catalogue offer a rented host takes; None: owned or community


@dataclass(slots=True)
class Batch:
    """One replica's served requests at one price, not yet settled."""

    host: HostState
    model: str
    quote: Quote
    first_us: int
    requests: int = 0
    prompt: int = 0
    completion: int = 0
    failed: int = 0


@dataclass(slots=True)
class Tally:
    work_s: float = 0.0  # replica-seconds of work served
    replica_s: float = 0.0  # replica-seconds routable
    refused: int = 0  # requests that found no replica
    requests: int = 0


def resolve_models(plan: SimPlan, catalogue: Catalogue) -> tuple[str, ...]:
    for m in plan.models:
        if m not in catalogue.model_by_id:
            raise FieldError("models", f"unknown model {m!r}; the catalogue lists {', '.join(catalogue.model_by_id)}")
    if plan.models:
        return plan.models
    named = tuple(dict.fromkeys(e.model for e in plan.fleet if e.model))
    return named or tuple(m.id for m in catalogue.default_models())


def plan_hosts(plan: SimPlan, models: tuple[str, ...], catalogue: Catalogue) -> list[HostPlan]:
    """Each host of the starting fleet: its GPU, cost and model (shared out round robin among the
    plan's models that fit the card, when its entry names none)."""
    entries = plan.fleet or parse_fleet(DEFAULT_FLEET, catalogue)
    hosts: list[HostPlan] = []
    turn = 0
    for e in entries:
        offer = _offer(e, catalogue)
        count = offer.gpu_count if offer is not None else 1
        card = catalogue.gpu_by_id[e.gpu]
        wanted = (e.model,) if e.model else models
        fits = [m for m in wanted if replica_capacity(catalogue.model_by_id[m], card, count) is not None]
        if not fits:
            raise FieldError("fleet", f"{e.gpu}:{e.provider}: none of {', '.join(wanted)} "
                                      f"fits on {count} x {card.name} ({card.vram_gb} GB)")
        if e.provider == "community":
            cost = 0
        elif offer is not None:
            cost = offer.price_per_hour
        else:  # owned: the card's cheapest rental price per GPU stands for what running it costs
            per_gpu = [o.price_per_hour // o.gpu_count for o in catalogue.offers if o.gpu == e.gpu]
            if not per_gpu:
                raise FieldError("fleet", f"{e.gpu}:owned: no catalogue price for {e.gpu} to cost it at")
            cost = min(per_gpu)
        for _ in range(e.count):
            model = fits[turn % len(fits)]
            turn += 1
            offer_id = f"{e.provider}:{e.gpu}:x{count}:{offer.kind}" if offer is not None else None
            hosts.append(HostPlan(e.gpu, count, e.provider, model, cost, offer_id))
    return hosts


def _offer(e: FleetEntry, catalogue: Catalogue):
    if e.provider not in ("vast", "runpod", "lambda"):
        return None
    offers = sorted((o for o in catalogue.offers if o.provider == e.provider and o.gpu == e.gpu),
                    key=lambda o: (o.gpu_count, o.price_per_hour))
    if not offers:
        raise FieldError("fleet", f"the catalogue has no {e.provider} offer of {e.gpu}")
    return offers[0]


def sim_settings(base: Settings, work: Path, plan: SimPlan, hosts: list[HostPlan]) -> Settings:
    """The operator's settings, with the simulation's own data dir, ledger and timings."""
    pricing = base.pricing.model_copy(update={"enabled": base.pricing.enabled if plan.dynamic_pricing is None
                                              else plan.dynamic_pricing})
    per_model = max((sum(1 for h in hosts if h.model == m) for m in {h.model for h in hosts}), default=1)
    autoscaler = base.autoscaler.model_copy(update={
        "enabled": base.autoscaler.enabled if plan.autoscale is None else plan.autoscale,
        "providers": ["local"],  # the simulated clouds: the catalogue's offers, rented as simulated hosts
        "max_replicas": max(base.autoscaler.max_replicas, per_model),
        "host_keys": "trust_new_instance",  # simulated hosts have no SSH key to confirm
    })
    return base.model_copy(update={
        "data_dir": work, "database_url": "", "log_file": work / "simulate.log", "admin_token": SecretStr("simulated"),
        "heartbeat_interval_s": STEP_S, "gpu_meter_tick_s": STEP_S, "gpu_cost_persist_s": 3600.0,
        # GPU time reaches the ledger once a simulated day per host (the report reads the meter): hourly
        # cost the 30-day benchmark 11 s of its 60 (a transfer's idempotency read each, 7,200 of them).
        "gpu_cost_post_s": 86_400,
        # The simulated hosts have no payout destination: every 5 minutes the payout loop would only read
        # its two tables: 17,280 reads in 30 days, which made the benchmark 96 s instead of 49.
        "payouts": base.payouts.model_copy(update={"interval_s": 86_400.0}),
        "provision_ready_timeout_s": 3600.0, "provision_poll_interval_s": STEP_S,
        "teardown_drain_timeout_s": 900.0, "pricing": pricing, "autoscaler": autoscaler,
    })


async def simulate(plan: SimPlan, settings: Settings, catalogue: Catalogue | None = None, *,
                   progress: Callable[[float], None] | None = None, keep_in: Path | None = None) -> SimResult:
    """Run the plan; raises FieldError for a bad plan, SimulationError when it cannot run. The run's
    ledger (SQLite) and log are temporary, or kept in `keep_in` (created; it must be empty)."""
    catalogue = catalogue or load_catalogue(settings.catalogue_dir)
    if not 0 < plan.days <= 366:
        raise FieldError("days", f"must be more than 0 and at most 366, got {plan.days}")
    if plan.rate_rps is not None and not 0 <= plan.rate_rps <= 100_000:
        raise FieldError("rate", f"must be 0 to 100000 requests/s, got {plan.rate_rps}")
    if not 0 < plan.load <= 2:
        raise FieldError("load", f"must be more than 0 and at most 2, got {plan.load}")
    if plan.start.tzinfo is None:
        raise FieldError("start", "must be a UTC time")
    models = resolve_models(plan, catalogue)
    hosts = plan_hosts(plan, models, catalogue)
    if not plan.models:  # the catalogue's defaults: only those the starting fleet serves
        models = tuple(m for m in models if any(h.model == m for h in hosts))
    Demand(plan.demand, seed=plan.seed)  # refuses an unknown profile before anything starts
    if keep_in is not None:
        _empty_dir(keep_in)
        run = SimRun(plan, sim_settings(settings, keep_in, plan, hosts), catalogue, models, hosts)
        return await run.run(progress)
    with tempfile.TemporaryDirectory(prefix="tokenmill-simulate-") as work:
        run = SimRun(plan, sim_settings(settings, Path(work), plan, hosts), catalogue, models, hosts)
        return await run.run(progress)


def _empty_dir(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise FieldError("out", f"{path} is not empty: the run's ledger goes into a directory of its own")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def run_simulation(plan: SimPlan, settings: Settings, catalogue: Catalogue | None = None, *,
                   progress: Callable[[float], None] | None = None, keep_in: Path | None = None) -> SimResult:
    return asyncio.run(simulate(plan, settings, catalogue, progress=progress, keep_in=keep_in))


class SimRun:
    def __init__(self, plan: SimPlan, settings: Settings, catalogue: Catalogue, models: tuple[str, ...],
                 hosts: list[HostPlan]) -> None:
        self.plan, self.settings, self.catalogue, self.models = plan, settings, catalogue, models
        self.host_plans = hosts
        self.start_us = to_us(plan.start)
        self.end_us = self.start_us + round(plan.days * DAY_US)
        self.clock = VirtualClock(self.start_us - WARMUP_US, settle_s=30.0)
        self.demand = Demand(plan.demand, seed=plan.seed, elasticity=plan.elasticity)
        self.events: list[Event] = []
        self.batches: dict[str, Batch] = {}  # host id -> the requests not yet settled
        self.days: dict[tuple[int, str], Tally] = {}
        self.hours: dict[tuple[int, str], Tally] = {}
        self.host_model: dict[str, str] = {}  # every host the run had, and its model
        self.host_info: dict[str, tuple[str, int, str, int]] = {}  # host id -> (gpu, count, provider, cost/h)
        self.host_time: dict[str, list[float]] = {}  # host id -> [work served, routable seconds]
        self.prices: dict[tuple[int, str], tuple[int, int]] = {}  # (hour, model) -> the price at its end
        self.rates: dict[str, float] = {}
        self.notes: list[str] = []
        self.settled = 0
        self.ledger_errors: list[BaseException] = []
        self._seq = 0

    # ------------------------------------------------------------------ the run
    async def run(self, progress: Callable[[float], None] | None) -> SimResult:
        from backend.simulate.report import build_result  # the report reads what the run leaves

        clock = self.clock
        with clock.hold():
            services = await Services.start(self.settings, self.catalogue, clock=clock)
        self.services = services
        self.hosts = SimHosts(services.fleet, self.catalogue, clock, heartbeat_s=STEP_S)
        try:
            with clock.hold():
                services.provisioner.local_hosts = self.hosts
                services.bus.attach("simulate", self.events.append)
                client = await services.clients.create_client("simulated clients")
                await services.clients.grant_credit(client.id, CREDIT_NANO, idempotency_key="simulate-credit")
                self.client_id, self.account = client.id, chart.client_account(client.id)
                await self._pin_prices()
                await self._start_fleet()
            await self._wait_for_fleet()
            # Clients arrive from the moment the fleet serves, so that prices and load are in their
            # stride when the first day begins; the figures count from then.
            self._set_rates()
            driver = asyncio.create_task(self._minutes(progress), name="simulate-demand")
            await clock.sleep((self.end_us - clock.now_us()) / 1e6)
            await driver
            with clock.hold():
                self._flush_all(self.end_us)
                await services.ledger.flush()
                await services.gpu_ledger.post_due(through_last_tick=True)  # the last day's GPU time too
                if self.ledger_errors:
                    raise SimulationError(f"the ledger refused a settlement: {self.ledger_errors[0]!r}")
                return await build_result(self, services)
        finally:
            with clock.hold():
                await self.hosts.close()
                await services.close()

    async def _pin_prices(self) -> None:
        if self.plan.pin is None:
            return
        prompt, completion = self.plan.pin
        for what, v in (("prompt", prompt), ("completion", completion)):
            parse_usd(v, what=f"pin {what}")
        for m in self.models:
            await self.services.pricing.set_pricing(m, SetModelPricing(pinned=True, prompt_usd=prompt,
                                                                       completion_usd=completion))

    async def _start_fleet(self) -> None:
        """Rent (or enrol) the starting fleet. Its hosts are up by the first day: they boot in a
        minute of the warm-up, where a host the autoscaler rents later takes BOOT_S."""
        services = self.services
        self.jobs = []
        self.hosts.boot_s = STEP_S
        for i, h in enumerate(self.host_plans):
            name = f"{h.provider}-{h.gpu}-{i + 1}"
            if h.offer_id is not None:  # rented: the production job path, provider local
                job = await services.provisioner.provision(ProvisionRequest(
                    model=h.model, provider="local", offer_id=h.offer_id, gpu=h.gpu, name=name, engine="sim",
                    reason="the plan's starting fleet"))
                self.jobs.append(job)
                continue
            share = COMMUNITY_SHARE_BPS if h.provider == "community" else 0
            host, token = await services.fleet.enroll(name, provider=h.provider, cost_per_hour=h.cost_per_hour,
                                                      payout_share_bps=share)
            await self.hosts.start_host(host.id, token, name, h.model, h.gpu, gpu_count=h.gpu_count, boot_s=STEP_S)

    async def _wait_for_fleet(self) -> None:
        while any(j.task is not None and not j.task.done() for j in self.jobs):
            await self.clock.sleep(STEP_S)
        self.hosts.boot_s = BOOT_S
        failed = [j for j in self.jobs if j.state != "succeeded"]
        if failed:
            raise SimulationError(f"the starting fleet could not be rented: {failed[0].error}")

    def _set_rates(self) -> None:
        """Requests/s per model at the market's middle price, before the day's shape."""
        plan, catalogue = self.plan, self.catalogue
        capacity: dict[str, float] = dict.fromkeys(self.models, 0.0)
        for sim in self.hosts.hosts.values():
            capacity[sim.model] = capacity.get(sim.model, 0.0) + sim.engine.capacity.requests_per_s(
                MEAN_PROMPT, MEAN_COMPLETION)
        if plan.rate_rps is not None:
            total = sum(capacity.values())
            for m in self.models:  # shared as the starting fleet's capacity is (evenly if it has none)
                self.rates[m] = plan.rate_rps * (capacity[m] / total if total else 1 / len(self.models))
            self.notes.append(f"demand: {plan.rate_rps:g} requests/s on average at the market's middle price, "
                              f"{plan.demand} profile")
        else:
            for m in self.models:
                self.rates[m] = plan.load * capacity[m]
            self.notes.append(f"demand: {plan.load:.0%} of the starting fleet's capacity on average at the market's "
                              f"middle price ({sum(self.rates.values()):.2f} requests/s), {plan.demand} profile")
        del catalogue

    # ------------------------------------------------------------------ each minute
    async def _minutes(self, progress: Callable[[float], None] | None) -> None:
        clock, start, step_us = self.clock, self.start_us, round(STEP_S * 1e6)
        await clock.sleep(STEP_S / 2)  # between the loops' instants: the services never run at the same time
        while clock.now_us() < self.end_us:
            now = clock.now_us()
            self._minute(now)
            hour = (now - start) // HOUR_US
            if (now + step_us - start) // HOUR_US != hour or now + step_us >= self.end_us:
                # The hour's last minute: settle it now, so that its usage events fall within it.
                self._close_hour(hour)
            if progress is not None:
                progress(max(0.0, (now - start) / (self.end_us - start)))
            await clock.sleep(STEP_S)

    def _minute(self, now: int) -> None:
        services, fleet = self.services, self.services.fleet
        day, hour = (now - self.start_us) // DAY_US, (now - self.start_us) // HOUR_US  # negative in the warm-up
        assigned: dict[str, list[int]] = {}  # host id -> [requests, prompt tokens, completion tokens]
        for model in self.models:
            entry = self.catalogue.model_by_id[model]
            quote = services.pricer.quote(entry)
            rate = self.rates[model] * self.demand.shape(now) * self.demand.price_factor(
                entry, quote.prompt_per_mtok, quote.completion_per_mtok)
            arrivals = self.demand.draw(rate, STEP_S)
            replicas = [r for r in fleet.replicas(model) if fleet.routable_now(r)]
            for tally in (self._tally(self.days, day, model), self._tally(self.hours, hour, model)):
                tally.replica_s += STEP_S * len(replicas)
                tally.requests += arrivals.requests
            if hour >= 0:
                for r in replicas:
                    self.host_time.setdefault(r.host.id, [0.0, 0.0])[1] += STEP_S
            if arrivals.requests == 0:
                continue
            if not replicas:
                self._tally(self.days, day, model).refused += arrivals.requests
                self._tally(self.hours, hour, model).refused += arrivals.requests
                continue
            batches = min(arrivals.requests, BATCHES_PER_REPLICA * len(replicas))
            size, extra = divmod(arrivals.requests, batches)
            mine: dict[str, list[int]] = {}
            for i in range(batches):
                n = size + (1 if i < extra else 0)
                rep = fleet.choose(model)
                if rep is None:
                    break
                rep.outstanding += n  # the balancer sees this batch until the minute is served
                a = mine.setdefault(rep.host.id, [0, 0, 0])
                a[0] += n
            for a in mine.values():  # each batch's tokens in proportion to its requests
                a[1] = arrivals.prompt_tokens * a[0] // arrivals.requests
                a[2] = arrivals.completion_tokens * a[0] // arrivals.requests
            assigned.update(mine)
        for host_id, sim in self.hosts.hosts.items():
            a = assigned.get(host_id)
            rep = sim.host.replicas.get(sim.model)
            if a is not None and rep is not None:
                rep.outstanding -= a[0]
            self._serve(sim, a, now, day, hour)

    def _serve(self, sim: SimHost, a: list[int] | None, now: int, day: int, hour: int) -> None:
        engine = sim.engine
        if sim.host.id not in self.host_model:
            self._note_host(sim)
        if a is None and engine.backlog_requests == 0:
            engine.utilization = 0.0
            return
        served = engine.step(*(a if a else (0, 0, 0)), STEP_S)
        for tally in (self._tally(self.days, day, sim.model), self._tally(self.hours, hour, sim.model)):
            tally.work_s += served.work_s
        if hour >= 0:
            self.host_time.setdefault(sim.host.id, [0.0, 0.0])[0] += served.work_s
        rep = sim.host.replicas.get(sim.model)
        running, waiting, _ = engine.metrics()
        if rep is not None:
            rep.outstanding = running + waiting  # what the router would count in flight there now
        if not served.requests and not served.failed:
            return
        quote = self.services.pricer.quote(self.catalogue.model_by_id[sim.model])
        batch = self.batches.get(sim.host.id)
        if batch is not None and batch.quote is not quote:
            self._settle(batch, now)
            batch = None
        if batch is None:
            batch = self.batches[sim.host.id] = Batch(sim.host, sim.model, quote, now)
        batch.requests += served.requests
        batch.prompt += served.prompt_tokens
        batch.completion += served.completion_tokens
        batch.failed += served.failed
        if served.requests:
            charged = quote.cost(served.prompt_tokens, served.completion_tokens)
            started = now - round(served.latency_s * 1e6)
            self.services.metrics.live.record(
                model=sim.model, status="ok", prompt_tokens=served.prompt_tokens,
                completion_tokens=served.completion_tokens, charged=charged,
                host_share=host_share(charged, sim.host.payout_share_bps), started_us=started,
                first_byte_us=started + round(served.ttft_s * 1e6), finished_us=now, requests=served.requests)
        if served.failed:
            self.services.metrics.live.record(model=sim.model, status="failed", prompt_tokens=0, completion_tokens=0,
                                              charged=0, host_share=0, started_us=now - round(120e6),
                                              first_byte_us=None, finished_us=now, requests=served.failed)

    def _note_host(self, sim: SimHost) -> None:
        host = sim.host
        provider = host.provider
        if provider == "local":  # rented through the simulated clouds: whose catalogue offer it took
            provider = next((o.provider for o in self.catalogue.offers
                             if o.gpu == sim.gpu and o.price_per_hour == host.cost_per_hour), "local")
        self.host_model[host.id] = sim.model
        self.host_info[host.id] = (sim.gpu, sim.gpu_count, provider, host.cost_per_hour)

    def host_utilization(self, host_ids: set[str]) -> float | None:
        work = sum(self.host_time.get(h, [0.0, 0.0])[0] for h in host_ids)
        routable = sum(self.host_time.get(h, [0.0, 0.0])[1] for h in host_ids)
        return work / routable if routable else None

    def _tally(self, table: dict[tuple[int, str], Tally], at: int, model: str) -> Tally:
        t = table.get((at, model))
        if t is None:
            t = table[(at, model)] = Tally()
        return t

    def _close_hour(self, hour: int) -> None:
        """Settle every replica's hour and note each model's price at its end."""
        self._flush_all(self.clock.now_us())
        for m in self.models:
            q = self.services.pricer.quote(self.catalogue.model_by_id[m])
            self.prices[(hour, m)] = (q.prompt_per_mtok, q.completion_per_mtok)

    def _flush_all(self, now: int) -> None:
        for batch in list(self.batches.values()):
            self._settle(batch, now)

    def _settle(self, b: Batch, now: int) -> None:
        """The batch's requests as one usage event (and its failures as another), through the
        production settlement: a hold, then its posting to revenue with the host's share."""
        ledger, host, model = self.services.ledger, b.host, b.model
        self.batches.pop(host.id, None)
        for status, n in (("ok", b.requests), ("failed", b.failed)):
            if not n:
                continue
            charged = b.quote.cost(b.prompt, b.completion) if status == "ok" else 0
            share = host_share(charged, host.payout_share_bps)
            self._seq += 1
            request_id = f"sim-{self._seq}"
            hold, _ = ledger.reserve(self.account, chart.REVENUE, max(charged, 1), code="usage", ref=request_id,
                                     lazy=True)
            usage = Usage(request_id=request_id, client_id=self.client_id, model=model, host_id=host.id,
                          prompt_tokens=b.prompt if status == "ok" else 0,
                          completion_tokens=b.completion if status == "ok" else 0,
                          price_prompt_per_mtok=b.quote.prompt_per_mtok,
                          price_completion_per_mtok=b.quote.completion_per_mtok,
                          started_us=b.first_us, finished_us=now, status=status, requests=n)
            _, fut = ledger.settle_nowait(hold.key, charged=charged, usage=usage, host_share=share,
                                          host_account=host.payable_account if share else None)
            fut.add_done_callback(self._settled)
            self.settled += n

    def _settled(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.ledger_errors.append(fut.exception())
