"""The backend application: one Services object wired at start-up, and the Litestar app."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from litestar import Litestar
from litestar.exceptions import HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine

from backend import __version__
from backend.api import (
    admin_api,
    autoscaler_api,
    billing_admin_api,
    billing_api,
    host_self_api,
    hosts_api,
    invoices_api,
    licences_api,
    me_api,
    openai_api,
    openrouter_api,
    payouts_api,
    pricing_api,
    projections_api,
    provision_api,
    public_pricing_api,
)
from backend.api.allow import answer_options
from backend.api.errors import api_error_handler, http_exception_handler, internal_error_handler
from backend.api.openapi_setup import complete_schema, openapi_config
from backend.autoscaler.service import Autoscaler
from backend.billing.invoices import InvoiceService
from backend.billing.payouts.records import PayoutRecords
from backend.billing.payouts.service import HostPayouts
from backend.billing.service import Billing
from backend.catalogue import Catalogue, load_catalogue
from backend.clients.licences import Licences
from backend.clients.service import ClientDirectory
from backend.db.engine import make_engine, migrate
from backend.fleet.models import ModelBook
from backend.fleet.registry import Fleet
from backend.ledger.errors import LedgerError
from backend.ledger.service import Ledger
from backend.metrics.gpu_cost import GpuCostMeter
from backend.metrics.gpu_cost_ledger import GpuCostLedger
from backend.metrics.live import LiveMetrics
from backend.metrics.load import LoadTracker
from backend.metrics.report import MetricsReport
from backend.metrics.restore import restore
from backend.metrics.uptime import UptimeWindow
from backend.money import format_usd
from backend.pricing.engine import PricingEngine
from backend.pricing.quote import Pricer
from backend.provision.service import Provisioner
from backend.routing.forwarder import Forwarder
from backend.routing.limits import RateLimiter
from backend.routing.proxy import Proxy
from backend.routing.transports import AiohttpTransport
from backend.runtime.bus import EventBus, log_sink
from backend.runtime.clock import REAL_CLOCK, Clock, RealClock
from backend.runtime.event_log import EventLog
from backend.runtime.supervisor import Supervisor
from backend.settings import Settings
from backend.wire.errors import ApiError

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    catalogue: Catalogue
    events: EventLog
    ledger: Ledger
    clients: ClientDirectory
    fleet: Fleet
    models: ModelBook
    pricer: Pricer
    proxy: Proxy
    admin_token: str
    metrics: MetricsReport
    provisioner: Provisioner
    started_us: int = 0
    simulated: bool = False  # set by `serve --local`
    clock: Clock = REAL_CLOCK  # every service reads time through it (a VirtualClock in simulations)
    # Sends requests to replicas: the proxy's paying ones, and unbilled ones (canaries). Set by start().
    forwarder: Forwarder | None = None
    # Runs every background loop (GET /admin/loops shows them). Set by start().
    supervisor: Supervisor = field(default_factory=Supervisor)
    # Each model's load over a window (pricing and the autoscaler decide from it). Set by start().
    load: LoadTracker | None = None
    # Each model's price from its load, the operator's pins and ranges (sets the pricer's quotes). Set by start().
    pricing: PricingEngine | None = None
    # Replicas per model from load, renting and releasing hosts through the provisioner. Set by start().
    autoscaler: Autoscaler | None = None
    # Monthly invoices: generated on the 2nd at 00:00 UTC for the month before, or by hand. Set by start().
    invoices: InvoiceService | None = None
    # Stripe top-ups, the webhook that credits them, auto-recharge, refunds and disputes. Set by start().
    billing: Billing | None = None
    # Rented and owned GPU time posted to the ledger each interval (GPU cost -> provider payable). Set by start().
    gpu_ledger: GpuCostLedger | None = None
    # Which clients accepted which model licences (the proxy checks it per request). Set by start().
    licences: Licences | None = None
    # Host payouts: the billing.payouts loop, thresholds and destinations, mark-paid. Set by start().
    payouts: HostPayouts | None = None

    @classmethod
    async def start(cls, settings: Settings, catalogue: Catalogue | None = None,
                    clock: Clock | None = None) -> Services:
        clock = clock or RealClock()
        engine = make_engine(settings.db_url, synchronous=settings.sqlite_synchronous)
        await migrate(engine)
        catalogue = catalogue or load_catalogue(settings.catalogue_dir)
        bus = EventBus(clock)  # services publish on it; the operator's ring and the log file subscribe
        bus.attach("log", log_sink)
        events = EventLog(bus=bus)
        supervisor = Supervisor(clock, bus, engine)  # services register their loops; started below
        ledger = Ledger(engine, synchronous=settings.sqlite_synchronous, max_batch=settings.ledger_max_batch,
                        default_hold_ttl_us=settings.hold_ttl_s * 1_000_000, clock=clock, supervisor=supervisor)
        await ledger.start()
        await _void_holds_left_open(ledger, bus)
        clients = ClientDirectory(engine, ledger, clock, events=bus)
        await clients.load()
        fleet = Fleet(engine, ledger, bus, heartbeat_interval_s=settings.heartbeat_interval_s, clock=clock,
                      supervisor=supervisor)
        await fleet.load()
        fleet.start()
        models = ModelBook(engine, catalogue, bus, clock)
        await models.load()
        licences = Licences(engine, catalogue, clients, bus)
        await licences.load()  # every acceptance, before the proxy checks any request
        pricer = Pricer()
        live = LiveMetrics()
        replayed = await restore(engine, live, clock.now_us())
        log.info("replayed %d usage events of the last hour into the live metrics", replayed)
        # Each model's load over a window, sampled every heartbeat: what pricing and the autoscaler read.
        load = LoadTracker(fleet, live, catalogue, sample_s=settings.heartbeat_interval_s,
                           keep_s=max(settings.pricing.window_s, settings.autoscaler.window_s), supervisor=supervisor)
        pricing = PricingEngine(settings, engine, catalogue, models, pricer, load, bus, clock, supervisor)
        await pricing.load()  # the prices of the last run, before the proxy quotes any
        meter = GpuCostMeter(engine, fleet, tick_s=settings.gpu_meter_tick_s,
                             persist_every_s=settings.gpu_cost_persist_s, clock=clock, supervisor=supervisor)
        meter.start()
        gpu_ledger = GpuCostLedger(meter, ledger, fleet, engine, post_s=settings.gpu_cost_post_s, clock=clock,
                                   supervisor=supervisor)
        forwarder = Forwarder(fleet, AiohttpTransport(connect_timeout_s=settings.upstream_connect_timeout_s,
                                                      read_timeout_s=settings.upstream_read_timeout_s))
        await forwarder.start()
        proxy = Proxy(ledger=ledger, clients=clients, fleet=fleet, models=models, pricer=pricer, events=bus,
                      limiter=RateLimiter(settings.key_rate_limit_rps, settings.key_rate_limit_burst, clock),
                      max_body_bytes=settings.max_body_bytes, forwarder=forwarder, metrics=live,
                      licences=licences, channel_fees={"openrouter": settings.openrouter.fee_ppm},
                      uptime=UptimeWindow(settings.openrouter.uptime_window_s, settings.openrouter.uptime_min_requests))
        billing = Billing(settings, engine, ledger, clients, bus, clock)
        await billing.start()
        proxy.after_hold = billing.recharge.check  # auto-recharge: an in-memory check after each hold
        # Its loop's first run finishes the payouts a previous run left pending.
        payouts = HostPayouts(settings.payouts, PayoutRecords(engine, clock), ledger, billing.gateway, fleet, bus,
                              clock, supervisor)
        metrics = MetricsReport(live, meter, fleet, engine)
        provisioner = Provisioner(settings, engine, catalogue, fleet, bus, metrics)
        await provisioner.start()
        autoscaler = Autoscaler(settings, engine, catalogue, fleet, models, load, provisioner, bus,
                                supervisor=supervisor)
        await autoscaler.start()
        invoices = InvoiceService(engine, settings.billing, clock=clock, bus=bus, ledger=ledger)
        await invoices.start()
        invoices.schedule(supervisor)  # the 2nd at 00:00 UTC, for the month before (caught up after downtime)
        supervisor.start()  # the loops registered above, each after those it needs
        bus.add("backend.started", "tokenmill", f"tokenmill {__version__} serving")
        return cls(settings, engine, catalogue, events, ledger, clients, fleet, models, pricer, proxy,
                   settings.ensure_admin_token(), metrics, provisioner, clock.now_us(), forwarder=forwarder,
                   clock=clock, supervisor=supervisor, load=load, pricing=pricing, autoscaler=autoscaler,
                   gpu_ledger=gpu_ledger, invoices=invoices, billing=billing, licences=licences,
                   payouts=payouts)

    @property
    def bus(self) -> EventBus:
        """Where services publish their events; `events` is the ring of the last ones."""
        return self.events.bus

    async def close(self) -> None:
        # Provisioning jobs first: a cancelled one destroys what it rented, through the fleet and database.
        if self.autoscaler is not None:  # first: it starts and waits on provisioning jobs
            await self.autoscaler.close()
        await self.provisioner.close()
        await self.proxy.forwarder.close()
        if self.payouts is not None:  # before billing closes the Stripe client a payout may be using
            await self.payouts.close()
        if self.billing is not None:  # its recharge tasks use the ledger
            await self.billing.close()
        await self.supervisor.stop()  # every loop, in the reverse of their start order
        await self.metrics.meter.close()
        await self.fleet.close()
        await self.ledger.close()
        await self.engine.dispose()


async def _void_holds_left_open(ledger: Ledger, events: EventBus) -> None:
    """Before any request: the holds open now belong to requests of a previous run that died with
    it (a crash, kill -9); their credit is released now, not when the holds expire."""
    try:
        count, amount = await ledger.void_open_holds()
    except LedgerError as exc:  # they still expire on their own
        log.error("could not void the holds left open by the previous run: %s", exc)
        return
    if count:
        events.add("ledger.holds_voided", "ledger", f"voided {count} holds left open by requests in flight when the "
                                                    f"previous run stopped, releasing {format_usd(amount)}", "warning")


def create_app(settings: Settings, *, services: Services | None = None) -> Litestar:
    """The Litestar app. Services start in the lifespan unless given (tests may share them)."""

    @asynccontextmanager
    async def lifespan(app: Litestar):
        own = services is None
        app.state.services = services or await Services.start(settings)
        try:
            yield
        finally:
            if own:
                await app.state.services.close()

    app = Litestar(
        route_handlers=[*openai_api.ROUTES, *hosts_api.ROUTES, *host_self_api.ROUTES, admin_api.AdminController,
                        provision_api.ProvisionController, pricing_api.PricingController,
                        autoscaler_api.AutoscalerController, projections_api.ProjectionsController,
                        me_api.MeController, licences_api.MeLicencesController,
                        licences_api.LicencesAdminController, *public_pricing_api.ROUTES, *openrouter_api.ROUTES,
                        *invoices_api.ROUTES, *billing_api.ROUTES, billing_admin_api.BillingAdminController,
                        *payouts_api.ROUTES],
        lifespan=[lifespan],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler,
                            Exception: internal_error_handler},
        openapi_config=openapi_config(),
        before_request=answer_options,
        before_send=[openai_api.tag_request_id],
        request_max_body_size=settings.max_body_bytes + 1024,
        debug=False,
        logging_config=None,
    )
    complete_schema(app)
    return app
