"""The Autoscaler against real Services (SQLite file, fleet, load tracker, provisioned_host records,
event bus) on a VirtualClock. Hosts' agents are played by register/heartbeat messages; the only
stand-in is where a cloud would be: the Provisioner's offers, provision and teardown calls are
recorded (a rental "boots" when the test enrolls its host), everything else is the real one."""

from __future__ import annotations

import pytest

from backend.app import Services, create_app
from backend.autoscaler.service import Autoscaler
from backend.autoscaler.tables import ModelScaling
from backend.money import parse_usd
from backend.provision.jobs import Job
from backend.provision.service import Provisioner, RequestError
from backend.runtime.clock import VirtualClock
from backend.wire.provision import OfferOut, OffersOut, ProvisionRequest
from hostkit import protocol
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-7b-instruct"
START_US = 1_780_000_000_000_000
SLOTS = 8


class CloudStandIn(Provisioner):
    """The real Provisioner (jobs, records, demand), with the cloud calls recorded instead of made."""

    def __init__(self, *args, offers: list[OfferOut], **kw) -> None:
        super().__init__(*args, **kw)
        self.offer_list = offers
        self.provisioned: list[ProvisionRequest] = []
        self.torn_down: list[tuple[str, str | None]] = []

    async def offers(self, model: str, *, gpu: str | None = None, only: str | None = None) -> OffersOut:
        fit = [o for o in self.offer_list if only is None or o.provider == only]
        return OffersOut(model, "fp16", 16.0, sorted(fit, key=lambda o: o.price_per_hour_nano), [])

    async def provision(self, req: ProvisionRequest) -> Job:
        self.provisioned.append(req)
        return self.jobs.new("provision", req.provider, req.model, reason=req.reason)

    async def teardown(self, host_id: str, *, reason: str | None = None) -> Job:
        host = self.fleet.host(host_id)
        if host.outstanding:
            raise AssertionError("torn down with requests outstanding")
        self.torn_down.append((host_id, reason))
        await self.fleet.remove(host)
        await self.records.update(host_id, state="removed")
        job = self.jobs.new("teardown", "vast", None)
        job.succeed("torn down")
        return job


def offer(provider: str, price: str, gpu: str = "RTX 4090") -> OfferOut:
    nano = parse_usd(price)
    return OfferOut(provider, f"{provider}-1", "rtx4090", gpu, 1, 24.0, nano, price, None, "on_demand", None)


def served(model: str, running: int) -> protocol.ServedModel:
    m = protocol.EngineMetrics(num_requests_running=running, num_requests_waiting=0, kv_cache_usage_perc=0.0,
                               max_num_seqs=SLOTS)
    return protocol.ServedModel(model=model, endpoint="http://127.0.0.1:9", engine="sim", metrics=m)


def checks(models: list[str]) -> list[protocol.CheckResult]:
    return [protocol.CheckResult(model=m, passed=True, checked_us=START_US, summary="sim") for m in models]


class Scene:
    def __init__(self, s: Services, auto: Autoscaler, cloud: CloudStandIn) -> None:
        self.s, self.auto, self.cloud = s, auto, cloud
        self.busy: dict[str, dict[str, int]] = {}  # host id -> model -> running requests

    async def host(self, name: str, running: int | dict[str, int], *, provider: str = "ssh", payout_bps: int = 0,
                   cost: str = "0", rented_model: str | None = None):
        load = running if isinstance(running, dict) else {MODEL: running}
        h, _ = await self.s.fleet.enroll(name, provider=provider, payout_share_bps=payout_bps,
                                         cost_per_hour=parse_usd(cost))
        if rented_model is not None:  # tokenmill provisioned it: it has a provisioned_host record
            await self.cloud.records.add(host_id=h.id, provider=provider, instance_name=name, model=rented_model)
            await self.cloud.records.update(h.id, state="serving")
        self.s.fleet.register(h, protocol.Register(name=name, models=[served(m, n) for m, n in load.items()],
                                                   checks=checks(list(load))))
        self.busy[h.id] = load
        return h

    async def round(self, running: int | None = None):
        """One decision: every live host heartbeats (with `running` requests per model when given),
        the load is sampled, the autoscaler decides; then a second passes."""
        for host in self.s.fleet.hosts():
            if host.state == "removed" or host.id not in self.busy:
                continue
            if running is not None:
                self.busy[host.id] = dict.fromkeys(self.busy[host.id], running)
            load = self.busy[host.id]
            await self.s.fleet.heartbeat(host, protocol.Heartbeat(
                models=[served(m, n) for m, n in load.items()], checks=checks(list(load))))
        self.s.load.sample()
        decisions = {d.model: d for d in await self.auto.decide()}
        await self.s.clock.sleep(1.0)  # past the 0.5 s window: the next decision sees only its own sample
        return decisions


@pytest.fixture
async def scene(tmp_path):
    settings = router_settings(
        tmp_path, heartbeat_interval_s=2.0,
        autoscaler=dict(enabled=True, interval_s=60, window_s=0.5, upscale_delay=3, downscale_delay=2,
                        budget_per_hour_usd="1.00", host_keys="trust_new_instance"),
        pricing=dict(interval_s=3600))
    clock = VirtualClock(START_US)
    with clock.hold():
        s = await Services.start(settings, clock=clock)
    cloud = CloudStandIn(s.settings, s.engine, s.catalogue, s.fleet, s.bus, s.metrics,
                         offers=[offer("runpod", "0.44"), offer("vast", "0.31")])
    auto = Autoscaler(s.settings, s.engine, s.catalogue, s.fleet, s.models, s.load, cloud, s.bus)
    await auto.start()
    try:
        yield Scene(s, auto, cloud)
    finally:
        await auto.close()
        await s.close()


def events(s: Services, prefix: str = "autoscale.") -> list:
    return [e for e in s.events.since(0, 2000) if e.kind.startswith(prefix)]


async def test_sustained_load_rents_the_cheapest_offer_once(scene):
    await scene.host("own-1", 8)  # 8 of 8 slots: utilization 1.0
    actions = [(await scene.round())[MODEL].action for _ in range(3)]
    assert actions == ["wait_up", "wait_up", "scale_up"]
    assert len(scene.cloud.provisioned) == 1
    req = scene.cloud.provisioned[0]
    assert (req.model, req.provider, req.offer_id) == (MODEL, "vast", "vast-1")
    assert req.trust_new_host_key is True
    assert req.reason.startswith(f"{MODEL}: utilization 1.00 > 0.80 for 3 decisions")
    assert "rent Vast.ai RTX 4090 at $0.31/h, expected profit unknown" in req.reason
    d = scene.auto._state[MODEL].last
    assert d.job_id is not None and d.desired == 2 and d.actual == 1
    assert [e.kind for e in events(scene.s)] == ["autoscale.wait_up", "autoscale.wait_up", "autoscale.scale_up"]
    # The rental is on its way: it counts as a replica, so the same need never rents twice.
    for _ in range(5):
        assert (await scene.round())[MODEL].action == "hold"
    assert len(scene.cloud.provisioned) == 1
    out = await scene.auto.out()
    (m,) = out.models
    assert (m.actual, m.pending, m.desired) == (1, 1, 2)
    assert out.spend_per_hour_nano == parse_usd("0.31")  # the rental under way counts against the budget


async def test_the_budget_ceiling_holds(scene):
    await scene.host("rented-1", 8, provider="runpod", cost="0.80", rented_model=MODEL)
    for _ in range(5):
        d = (await scene.round())[MODEL]
    assert scene.cloud.provisioned == []
    assert d.action == "blocked"
    assert d.reason.endswith("rent Vast.ai RTX 4090 at $0.31/h would take spend to $1.11/h, over the budget of "
                             "$1.00/h")
    assert [e.level for e in events(scene.s) if e.kind == "autoscale.blocked"] == ["warning"] * 3
    assert (await scene.auto.out()).spend_per_hour_nano == parse_usd("0.80")


async def test_a_refused_provision_is_blocked_with_the_provisioners_reason(scene):
    async def refuse(req):
        raise RequestError("no SSH private key at /nowhere", code="no_ssh_key", param="ssh_key_path")

    scene.cloud.provision = refuse
    await scene.host("own-1", 8)
    ds = [(await scene.round())[MODEL] for _ in range(4)]
    assert [d.action for d in ds] == ["wait_up", "wait_up", "blocked", "blocked"]
    assert ds[2].reason.endswith(": no SSH private key at /nowhere")
    assert scene.auto._state[MODEL].streak.up == 4  # still wanting: it tries again next time


async def test_low_load_releases_the_least_valuable_idle_replica(scene):
    # Costs chosen so that only the kind of host orders them: rented first, however cheap.
    community = await scene.host("community", 0, provider="community", payout_bps=7000, cost="0.90")
    own = await scene.host("own", 0, provider="ssh", cost="0.50")
    cheap = await scene.host("rented-cheap", 0, provider="vast", cost="0.31", rented_model=MODEL)
    dear = await scene.host("rented-dear", 0, provider="runpod", cost="0.44", rented_model=MODEL)
    dear.replicas[MODEL].outstanding = 1  # still finishing a request: never chosen
    ds = [(await scene.round())[MODEL] for _ in range(2)]
    assert [d.action for d in ds] == ["wait_down", "scale_down"]
    assert ds[1].host_id == cheap.id  # rented before owned before community; the busy one skipped
    assert cheap.drain_by == "autoscaler"
    for task in list(scene.auto._releasing.values()):
        await task
    assert scene.cloud.torn_down == [(cheap.id, ds[1].reason)]
    assert cheap.state == "removed"
    dear.replicas[MODEL].outstanding = 0
    # Two more, each after downscale_delay decisions: the dear rented one, then the owned one (not
    # provisioned by tokenmill: only drained); the community host stays, at the minimum of 1.
    released = []
    for _ in range(8):
        d = (await scene.round())[MODEL]
        for task in list(scene.auto._releasing.values()):
            await task
        if d.action == "scale_down":
            released.append(d.host_id)
    assert released == [dear.id, own.id]
    assert [t[0] for t in scene.cloud.torn_down] == [cheap.id, dear.id]
    assert own.state == "draining" and own.drain_by == "autoscaler"
    assert community.state == "active"

    # Load comes back: the host it drained is resumed first, for free (nothing rented).
    actions = [(await scene.round(running=8))[MODEL].action for _ in range(3)]
    assert actions == ["wait_up", "wait_up", "scale_up"]
    assert own.state == "active" and scene.cloud.provisioned == []
    assert scene.auto._state[MODEL].last.reason.endswith("; resume own")


async def test_a_fleet_in_steady_use_still_releases_a_replica_once_its_requests_finish(scene):
    # A model in steady use has requests in flight on every replica at any instant: skipping busy hosts
    # meant it never scaled down (`tokenmill simulate` showed rented hosts kept all night at 15 % load).
    # Now the least valuable is drained anyway and torn down only when its last request is done.
    cheap = await scene.host("rented-cheap", 1, provider="vast", cost="0.31", rented_model=MODEL)
    dear = await scene.host("rented-dear", 1, provider="runpod", cost="0.44", rented_model=MODEL)
    for h in (cheap, dear):
        h.replicas[MODEL].outstanding = 2
    ds = [(await scene.round())[MODEL] for _ in range(2)]
    assert [d.action for d in ds] == ["wait_down", "scale_down"]
    assert ds[1].host_id == dear.id  # both busy: the dearer rented one goes
    assert dear.state == "draining" and dear.drain_by == "autoscaler"
    await scene.s.clock.sleep(30)
    assert scene.cloud.torn_down == [] and dear.state == "draining"  # still finishing its two requests
    dear.replicas[MODEL].outstanding = 0
    for task in list(scene.auto._releasing.values()):
        await task
    assert scene.cloud.torn_down == [(dear.id, ds[1].reason)] and dear.state == "removed"
    assert cheap.state == "active"


async def test_a_host_serving_another_model_goes_only_if_that_model_keeps_enough(scene):
    # Both models idle on a shared host and one of their own; OTHER must keep 2 replicas.
    await scene.auto.set_scaling(OTHER, _scaling(min_replicas=2))
    shared = await scene.host("shared", {MODEL: 0, OTHER: 0}, cost="0.90")
    alone = await scene.host("alone", 0, cost="0.10")
    await scene.host("other", {OTHER: 0})
    ds = [(await scene.round())[MODEL] for _ in range(2)]
    assert ds[1].action == "scale_down" and ds[1].host_id == alone.id  # the dearer shared one is needed by OTHER
    assert shared.state == "active"


async def test_off_computes_and_never_acts(scene):
    await scene.auto.set_scaling(MODEL, _scaling(enabled=False))
    await scene.host("own-1", 8)
    ds = [(await scene.round())[MODEL] for _ in range(5)]
    assert {d.action for d in ds} == {"off"} and ds[-1].desired == 2
    assert scene.cloud.provisioned == []
    assert ds[-1].reason.endswith("would scale up, but scaling is off for this model")
    assert [e.kind for e in events(scene.s) if e.kind != "autoscale.limits"] == ["autoscale.off"]  # said once
    scene.s.load.sample()  # the load now, as the next decision would see it
    m = scene.auto.model_out(MODEL)
    assert m.enabled is False and m.up_streak == 5 and m.next_action == "nothing: off (would scale up)"


async def test_below_min_rents_at_once(scene):
    await scene.auto.set_scaling(MODEL, _scaling(min_replicas=2))
    await scene.host("own-1", 0)
    d = (await scene.round())[MODEL]
    assert d.action == "scale_up" and d.reason.startswith(f"{MODEL}: 1 replicas, below its minimum of 2")
    assert len(scene.cloud.provisioned) == 1


async def test_a_minimum_profit_keeps_it_from_renting_without_revenue_to_pay_for_it(scene):
    a = scene.s.settings.autoscaler
    scene.s.settings.autoscaler = a.model_copy(update={"min_expected_profit_per_hour_usd": "0.05"})
    await scene.host("own-1", 8)  # full, and nobody has paid anything yet
    ds = [(await scene.round())[MODEL] for _ in range(4)]
    assert [d.action for d in ds] == ["wait_up", "wait_up", "blocked", "blocked"]
    assert ds[2].reason.endswith("rent Vast.ai RTX 4090 at $0.31/h: no revenue yet to expect the minimum profit "
                                 "of $0.05/h from")
    assert scene.cloud.provisioned == []
    assert (await scene.auto.out()).min_profit_per_hour_nano == parse_usd("0.05")
    # A model below its minimum gets its replica all the same.
    await scene.auto.set_scaling(MODEL, _scaling(min_replicas=2))
    assert (await scene.round())[MODEL].action == "scale_up" and len(scene.cloud.provisioned) == 1


def _scaling(**kw):
    from backend.wire.autoscaler import SetModelScaling

    return SetModelScaling(**kw)


async def test_admin_api_shows_and_sets_scaling(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        http, admin = router.http, router.admin
        assert (await http.get("/admin/autoscaler")).status_code == 401
        r = await http.get("/admin/autoscaler", headers=admin)
        assert r.status_code == 200
        body = r.json()
        assert body["enabled"] is False and body["models"] == [] and body["recent"] == []
        assert body["budget_per_hour_nano"] == parse_usd("10.00")
        assert body["min_profit_per_hour_nano"] is None  # rents on load alone unless the operator sets one

        r = await http.put(f"/admin/models/{MODEL}/scaling", json={"min_replicas": 0, "max_replicas": 6},
                           headers=admin)
        assert r.status_code == 200, r.text
        m = r.json()
        assert (m["min_replicas"], m["max_replicas"], m["limits_overridden"]) == (0, 6, True)
        assert m["enabled"] is False  # the autoscaler is off altogether in these settings
        assert m["model_enabled"] is True  # while the model's own switch is on
        assert m["next_action"] == "nothing: off" and m["next"] == "off"

        refused = [({"min_replicas": -1}, "min_replicas"), ({"max_replicas": 0}, "max_replicas"),
                   ({"min_replicas": 7}, "min_replicas"), ({"max_replicas": 10**20}, "max_replicas"),
                   ({"max_replicas": 2, "min_replicas": 3}, "min_replicas")]
        for change, param in refused:
            r = await http.put(f"/admin/models/{MODEL}/scaling", json=change, headers=admin)
            assert r.status_code == 400, change
            assert r.json()["error"]["param"] == param
        for change, param in [({"min_replicas": "two"}, "min_replicas"), ({"enabled": 0}, "enabled"),
                              ({"enabled": True, "max": 3}, None)]:
            r = await http.put(f"/admin/models/{MODEL}/scaling", json=change, headers=admin)
            assert r.status_code == 400, change
            assert param is None or r.json()["error"]["param"] == param
        r = await http.put("/admin/models/no-such-model/scaling", json={"enabled": False}, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

        r = await http.put(f"/admin/models/{MODEL}/scaling", json={"enabled": False, "min_replicas": None},
                           headers=admin)
        assert r.status_code == 200
        assert (r.json()["min_replicas"], r.json()["max_replicas"]) == (1, 6)  # min back to the default
        assert r.json()["model_enabled"] is False
        body = (await http.get("/admin/autoscaler", headers=admin)).json()
        assert [m["model"] for m in body["models"]] == [MODEL]  # the operator set it: it is looked after
        assert body["models"][0]["next_decision_us"] is not None

        # Kept in the table, and read back by an autoscaler that starts later.
        s = router.services
        later = Autoscaler(s.settings, s.engine, s.catalogue, s.fleet, s.models, s.load, s.provisioner, s.bus)
        await later.start()
        assert later.limits(MODEL) == (1, 6, True) and later.model_out(MODEL).enabled is False
        assert ModelScaling.__tablename__ == "model_scaling"
        assert create_app  # the app the router runs registers the controller (the requests above)


async def test_a_rental_waiting_for_its_host_key_or_failing_is_said(scene):
    await scene.host("own-1", 8)
    for _ in range(3):
        await scene.round()
    job = scene.cloud.jobs.get(scene.auto._state[MODEL].last.job_id)
    job.state, job.host_name = "waiting_host_key", "vast-rtx4090-1"  # as the job does when a key is unknown
    d = (await scene.round())[MODEL]
    assert d.action == "blocked"
    assert d.reason.endswith(f"{job.id} waits for the operator to confirm the host key of vast-rtx4090-1 (in the "
                             f"console; or [autoscaler] host_keys = \"trust_new_instance\")")
    job.fail("the instance never booted")
    actions = [(await scene.round())[MODEL].action for _ in range(3)]
    assert actions == ["wait_up", "wait_up", "scale_up"]  # tried again after the delay, as any want
    failed = [e for e in events(scene.s) if "renting a replica failed" in e.message]
    assert [(e.kind, e.level) for e in failed] == [("autoscale.blocked", "warning")]
    assert failed[0].message.endswith(f"({job.id}): the instance never booted")
    assert len(scene.cloud.provisioned) == 2


async def test_a_host_that_just_joined_counts_as_on_its_way(scene):
    h, _ = await scene.s.fleet.enroll("joining")
    scene.s.fleet.register(h, protocol.Register(name="joining", models=[served(MODEL, 0)]))  # no check yet
    d = (await scene.round())[MODEL]
    assert (d.action, d.actual) == ("hold", 0) and "0 replicas, 1 on the way" in d.reason
    assert scene.cloud.provisioned == []  # below the minimum, but not for long: nothing rented
    m = scene.auto.model_out(MODEL)
    assert (m.actual, m.pending) == (0, 1)
