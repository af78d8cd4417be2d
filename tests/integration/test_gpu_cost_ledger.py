"""GPU time in the ledger: a day of a fleet with rented, owned and community hosts on the virtual
clock (a host removed mid-minute, an owned host's rate changed, a crash and a clean restart), with
clients direct and through OpenRouter, whose ledger then says exactly what the console says:
revenue - host shares - GPU cost - OpenRouter's fees from the ledger equals GET /admin/metrics'
profit of today, over real HTTP. No period is posted twice or skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random

import httpx
import pytest
from pydantic import ValidationError

from backend.app import Services, create_app
from backend.catalogue import load_catalogue
from backend.db.engine import make_engine
from backend.ledger import chart
from backend.ledger.queries import check_invariants
from backend.ledger.service import Usage
from backend.ledger.settlement_policy import channel_fee
from backend.ledger.tables import LedgerTransfer
from backend.metrics.gpu_cost import Stretch
from backend.metrics.gpu_cost_ledger import GpuCostLedger, key_range, models_ref, parse_key, stretch_cost
from backend.metrics.ledger_profit import profit_by_model_and_day, split
from backend.money import parse_usd
from backend.runtime.clock import VirtualClock, to_us
from backend.server import listen_socket, uvicorn_server
from backend.settings import Settings
from backend.simulate.plan import SimPlan, parse_fleet
from backend.simulate.result import TOTAL
from backend.simulate.run import run_simulation
from hostkit import protocol
from tests.router_harness import router_settings

MIN_US, HOUR_US, DAY_US = 60_000_000, 3_600_000_000, 86_400_000_000
DAY = to_us(dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
START_US = DAY + 6 * HOUR_US
END_US = DAY + 18 * HOUR_US  # the console is read at 18:00:00, in the same day
CRASH_AT, CRASH_BACK = DAY + 11 * HOUR_US + 31 * MIN_US + 13_000_000, DAY + 11 * HOUR_US + 52 * MIN_US
RESTART_AT, RESTART_BACK = DAY + 14 * HOUR_US, DAY + 14 * HOUR_US + 5 * MIN_US
REMOVE_AT = DAY + 10 * HOUR_US + 30 * MIN_US + 20_000_000  # the spot host is torn down mid-minute
RATE_CHANGE_AT = DAY + 9 * HOUR_US
A, B = "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"
HEARTBEAT_S = 30.0

# (name, provider, $/h, payout share bps, models)
HOSTS = (("rig", "runpod", "1.29", 0, (A, B)),  # rented: its cost split between the two models it serves
         ("box", "ssh", "0.37", 0, (B,)),  # owned: the cost the operator set (changed at 09:00)
         ("garage", "community", "0", 7000, (A,)),  # community: paid a share of each request instead
         ("spot", "vast", "0.40", 0, (B,)))  # rented, torn down at 10:30:20


def _settings(tmp_path, db_url: str) -> Settings:
    # The meter ticks every 7 s, so stretches end between minutes; it writes each minute (default).
    return router_settings(tmp_path, database_url=db_url, heartbeat_interval_s=HEARTBEAT_S, hold_ttl_s=900,
                           gpu_meter_tick_s=7, key_rate_limit_rps=0)


async def _crash(services: Services) -> None:
    """What a kill -9 leaves: the loops stop where they are, and the GPU meter never writes its open
    stretches' last ends (they stay as last written, up to a minute behind)."""
    await services.autoscaler.close()
    await services.provisioner.close()
    await services.proxy.forwarder.close()
    await services.supervisor.stop()
    await services.fleet.close()
    await services.ledger.close()
    await services.engine.dispose()


class Day:
    """The fleet's agents and its clients' requests, across the backend's restarts."""

    def __init__(self, clock: VirtualClock, settings: Settings) -> None:
        self.clock, self.settings = clock, settings
        self.rng = random.Random(14)
        self.services: Services | None = None
        self.host_ids: dict[str, str] = {}
        self.removed = False
        self.up = False  # the backend runs (the agents and clients wait while it is down)
        self.n = 0

    async def start(self, first: bool) -> None:
        with self.clock.hold():
            self.services = s = await Services.start(self.settings, clock=self.clock)
            if first:
                for name, provider, rate, share, _ in HOSTS:
                    host, _ = await s.fleet.enroll(name, provider=provider, payout_share_bps=share,
                                                   cost_per_hour=parse_usd(rate, what="rate"))
                    self.host_ids[name] = host.id
                for name in ("acme", "openrouter"):
                    client = await s.clients.create_client(name, name)
                    await s.clients.grant_credit(client.id, parse_usd("1000", what="credit"),
                                                 idempotency_key=f"seed-{name}")
                await s.clients.set_channel("openrouter", "openrouter")
            for name, *_, models in HOSTS:
                if not (name == "spot" and self.removed):
                    self._register(name, models)
        self.up = True

    async def stop(self, crash: bool) -> None:
        self.up = False
        with self.clock.hold():
            await (_crash(self.services) if crash else self.services.close())

    def _register(self, name: str, models: tuple[str, ...]) -> None:
        fleet = self.services.fleet
        served = [protocol.ServedModel(model=m, endpoint="http://127.0.0.1:9", engine="sim") for m in models]
        checks = [protocol.CheckResult(model=m, passed=True, checked_us=START_US, summary="ok") for m in models]
        fleet.register(fleet.host(self.host_ids[name]),
                       protocol.Register(name=name, models=served, agent_version="sim", checks=checks))

    async def beats(self) -> None:
        while True:
            await self.clock.sleep(HEARTBEAT_S)
            if not self.up:
                continue
            for name, *_, models in HOSTS:
                host = self.services.fleet.host(self.host_ids[name])
                if host.registered:
                    served = [protocol.ServedModel(model=m, endpoint="http://127.0.0.1:9", engine="sim")
                              for m in models]
                    await self.services.fleet.heartbeat(host, protocol.Heartbeat(models=served))

    async def requests(self) -> None:
        """A request every few minutes, on a host serving its model, settled through the ledger."""
        while True:
            await self.clock.sleep(self.rng.randint(60, 400))
            if not self.up:
                continue
            name, *_, share_bps, models = self.rng.choice([h for h in HOSTS if h[0] != "spot" or not self.removed])
            s, model = self.services, self.rng.choice(models)
            host = s.fleet.host(self.host_ids[name])
            charged = self.rng.randint(10_000, 5_000_000)
            share = charged * share_bps // 10_000
            client = self.rng.choice(("acme", "openrouter"))
            fee = channel_fee(charged, self.settings.openrouter.fee_ppm) if client == "openrouter" else 0
            self.n += 1
            key, now = f"req-{self.n}", self.clock.now_us()
            _, durable = s.ledger.reserve(chart.client_account(client), chart.REVENUE, charged, code="usage",
                                          ref=key, key=key)
            await durable
            usage = Usage(request_id=key, client_id=client, model=model, host_id=host.id, prompt_tokens=100,
                          completion_tokens=50, price_prompt_per_mtok=1, price_completion_per_mtok=1,
                          started_us=now, finished_us=self.clock.now_us())
            await s.ledger.settle(key, charged=charged, usage=usage, host_share=share,
                                  host_account=host.payable_account if share else None, fee=fee,
                                  fee_account=chart.channel_account("openrouter") if fee else None)

    async def operator(self) -> None:
        await self.clock.sleep((RATE_CHANGE_AT - self.clock.now_us()) / 1e6)
        await self.services.fleet.set_cost(self.services.fleet.host(self.host_ids["box"]),
                                           parse_usd("0.45", what="rate"))
        await self.clock.sleep((REMOVE_AT - self.clock.now_us()) / 1e6)
        self.removed = True
        await self.services.fleet.remove(self.services.fleet.host(self.host_ids["spot"]))


async def _admin_api(services: Services, settings: Settings) -> tuple[dict, list[dict]]:
    """GET /admin/metrics (what the console shows) and GET /admin/profit of the day, over real HTTP."""
    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn_server(create_app(settings, services=services))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http:
            admin = {"Authorization": f"Bearer {services.admin_token}"}
            r = await http.get("/admin/metrics", headers=admin)
            assert r.status_code == 200, r.text
            p = await http.get("/admin/profit", params={"since_us": DAY, "until_us": DAY + DAY_US}, headers=admin)
            assert p.status_code == 200, p.text
            return r.json(), p.json()
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _postings(services: Services) -> list[tuple[int, int, str, int, str | None, str]]:
    """Every GPU cost transfer: (start, end, host, amount, ref, credit account)."""
    t = LedgerTransfer.__table__
    low, high = key_range(0, 10**16 - 1)
    accounts = {a.id: a.code for a in services.ledger.accounts()}
    async with services.engine.connect() as conn:
        rows = (await conn.execute(t.select().where(t.c.key >= low, t.c.key < high))).mappings().all()
    out = []
    for r in rows:
        assert r["code"] == "gpu_cost" and accounts[r["debit_account_id"]] == chart.GPU_COST
        start, end, host = parse_key(r["key"])
        out.append((start, end, host, r["amount"], r["ref"], accounts[r["credit_account_id"]]))
    return out


async def test_a_day_of_gpu_cost_in_the_ledger_equals_the_consoles_profit(tmp_path, db_url):
    settings = _settings(tmp_path, db_url)
    clock = VirtualClock(START_US)
    day = Day(clock, settings)
    await day.start(first=True)
    tasks = [asyncio.create_task(c()) for c in (day.beats, day.requests, day.operator)]
    try:
        await clock.sleep((CRASH_AT - clock.now_us()) / 1e6)
        await day.stop(crash=True)
        await clock.sleep((CRASH_BACK - clock.now_us()) / 1e6)  # down 21 minutes
        await day.start(first=False)
        await clock.sleep((RESTART_AT - clock.now_us()) / 1e6)
        await day.stop(crash=False)
        await clock.sleep((RESTART_BACK - clock.now_us()) / 1e6)
        await day.start(first=False)
        await clock.sleep((END_US - clock.now_us()) / 1e6)
        with clock.hold():
            assert clock.now_us() == END_US
            for t in tasks:
                if t.done():
                    t.result()  # raises what the agents, clients or operator raised
                t.cancel()
            s = day.services
            # The meter's last tick, and everything up to it posted (the loop posts a minute behind).
            await s.metrics.meter.tick()
            await s.gpu_ledger.post_due(through_last_tick=True)
            console, profit = await _admin_api(s, settings)
            rows = await profit_by_model_and_day(s.engine, DAY, DAY + DAY_US)
            meter = await s.metrics.meter.cost(DAY, END_US)
            postings = await _postings(s)
            # A new poster (a restart) finds nothing left to post.
            again = GpuCostLedger(s.metrics.meter, s.ledger, s.fleet, s.engine, clock=clock)
            assert await again.post_due(through_last_tick=True) == 0
            assert await _postings(s) == postings
            async with s.engine.connect() as conn:
                assert await check_invariants(conn) == []
            accounts = {a.code: a.balance for a in s.ledger.accounts()}
    finally:
        for t in tasks:
            t.cancel()
        with clock.hold():
            if day.services is not None:
                await day.services.close()

    ids = day.host_ids
    today = console["today"]
    ledger = {"revenue": sum(r.revenue for r in rows), "host_shares": sum(r.host_shares for r in rows),
              "gpu_cost": sum(r.gpu_cost for r in rows), "fees": sum(r.fees for r in rows),
              "profit": sum(r.profit for r in rows)}
    # The ledger says what the console says, to the nano-dollar.
    assert ledger == {"revenue": today["revenue_nano"], "host_shares": today["payouts_nano"],
                      "gpu_cost": today["gpu_cost_nano"], "fees": today["fees_nano"], "profit": today["profit_nano"]}
    assert ledger["revenue"] > 0 and ledger["host_shares"] > 0 and ledger["gpu_cost"] > 0 and ledger["fees"] > 0
    assert ledger["profit"] == ledger["revenue"] - ledger["host_shares"] - ledger["gpu_cost"] - ledger["fees"]
    # Every fee owed is OpenRouter's payable.
    assert accounts[chart.channel_account("openrouter")] == ledger["fees"]
    # GET /admin/profit is the same query, per model.
    assert [(p["model"], p["revenue_nano"], p["host_shares_nano"], p["gpu_cost_nano"], p["fees_nano"],
             p["profit_nano"]) for p in profit] == [(r.model, r.revenue, r.host_shares, r.gpu_cost, r.fees, r.profit)
                                                    for r in rows]
    # Per host too, each to its provider's payable; the owned host to "owned", the community host nowhere.
    by_host: dict[str, int] = {}
    for _, _, host, amount, _, _ in postings:
        by_host[host] = by_host.get(host, 0) + amount
    assert by_host == {h: c for h, c in meter.items() if c}
    assert ids["garage"] not in by_host
    assert accounts[chart.provider_account("runpod")] == by_host[ids["rig"]]
    assert accounts[chart.provider_account("owned")] == by_host[ids["box"]]
    assert accounts[chart.provider_account("vast")] == by_host[ids["spot"]]
    assert chart.provider_account("community") not in accounts
    # No period posted twice or overlapping another of its host, none crossing midnight; the removed
    # host's last period is its last minute's 20 s.
    for host in by_host:
        periods = sorted((a, b) for a, b, h, *_ in postings if h == host)
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(periods))
        assert all(a // DAY_US == (b - 1) // DAY_US and b - a <= MIN_US for a, b in periods)
    spot = sorted((a, b, amount) for a, b, h, amount, *_ in postings if h == ids["spot"])
    assert spot[-1][0] == REMOVE_AT - REMOVE_AT % MIN_US and spot[-1][1] == REMOVE_AT - REMOVE_AT % MIN_US + MIN_US
    # (It ended at the meter's first tick after the removal, within 7 s of it.)
    assert 20 * 400_000_000 // 3600 <= spot[-1][2] <= 28 * 400_000_000 // 3600
    # The models each period served: both of the rented host's, split evenly; the owned host's one.
    refs = {h: {ref for _, _, hh, _, ref, _ in postings if hh == h} for h in by_host}
    assert f"{A},{B}" in refs[ids["rig"]] and refs[ids["box"]] <= {B, None}
    # Per model and day: the parts add up, and each model carries GPU cost.
    models = {r.model: r for r in rows}
    assert {A, B} <= set(models) and models[A].gpu_cost > 0 and models[B].gpu_cost > models[A].gpu_cost
    assert {r.day for r in rows} == {"2026-03-02"}


async def test_tokenmill_simulate_leaves_each_days_profit_in_its_ledger(tmp_path):
    """`tokenmill simulate` posts a day a period (its benchmark stays fast) and the last day at its
    end: each day's revenue, host shares and GPU cost from the run's ledger are its report's."""
    catalogue = load_catalogue(None)
    llama = "llama-3.1-8b-instruct"
    plan = SimPlan(days=2, fleet=parse_fleet(f"rtx4090:runpod:1:{llama},rtx3090:community:1:{llama}", catalogue),
                   seed=7, load=0.5)
    result = await asyncio.to_thread(run_simulation, plan, Settings(data_dir=tmp_path / "op"), catalogue,
                                     keep_in=tmp_path / "run")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'run' / 'ledger.db'}")
    try:
        rows = await profit_by_model_and_day(engine, result.start_us, result.end_us)
    finally:
        await engine.dispose()
    days = {d.day: d for d in result.days if d.model == TOTAL and d.day != TOTAL}
    assert len(days) == 2
    for day, d in days.items():
        mine = [r for r in rows if r.day == day]
        assert [r.model for r in mine] == [llama]
        assert (mine[0].revenue, mine[0].host_shares, mine[0].gpu_cost, mine[0].profit) == (
            d.revenue_nano, d.payouts_nano, d.gpu_cost_nano, d.profit_nano)
        assert d.gpu_cost_nano == 24 * 340_000_000  # the rented host's whole day at $0.34/h


def test_a_stretchs_periods_sum_to_what_the_meter_counts_that_day():
    """Any partition of a day into periods: their amounts add up to the meter's figure exactly."""
    rng = random.Random(3)
    for _ in range(300):
        rate = rng.randint(1, 5_000_000_000)
        started = DAY - rng.randint(0, 2 * HOUR_US)
        s = Stretch("h", started, DAY + rng.randint(0, DAY_US - 1), rate)
        cuts = sorted({DAY, DAY + DAY_US, *(rng.randint(DAY, DAY + DAY_US) for _ in range(rng.randint(0, 40)))})
        until = rng.choice(cuts[1:])
        parts = [stretch_cost(s, a, b) for a, b in itertools.pairwise(cuts) if b <= until]
        assert all(p >= 0 for p in parts)
        assert sum(parts) == s.cost_between(DAY, until)


def test_split_among_models_is_exact():
    assert split(10, ["b", "a", "c"]) == [("a", 4), ("b", 3), ("c", 3)]
    assert split(7, []) == [(None, 7)]
    assert sum(p for _, p in split(1_000_000_007, ["x", "y", "z", "w"])) == 1_000_000_007
    # A ref holds what the ledger takes (1000 characters), however many models a host serves.
    assert models_ref({"b", "a"}) == "a,b" and models_ref(set()) is None
    assert len(models_ref({f"model-{i:03d}-{'x' * 40}" for i in range(100)})) <= 1000


@pytest.mark.parametrize("bad", [70, 59, 86_401])
def test_the_posting_interval_divides_a_day(bad, tmp_path):
    with pytest.raises(ValidationError, match="gpu_cost_post_s"):
        Settings(data_dir=tmp_path, gpu_cost_post_s=bad)
    assert Settings(data_dir=tmp_path).gpu_cost_post_s == 60
    assert Settings(data_dir=tmp_path, gpu_cost_post_s=3600).gpu_cost_post_s == 3600
