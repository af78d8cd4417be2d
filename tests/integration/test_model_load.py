"""Each model's load over a window (backend/metrics/load.py): what pricing and the autoscaler read.
Real Services on a SQLite file; the hosts' agents are played by register/heartbeat messages."""

from __future__ import annotations

import pytest

from backend.app import Services
from backend.runtime.clock import VirtualClock
from hostkit import protocol
from tests.router_harness import router_settings

MODEL = "llama-3.1-8b-instruct"  # size class small: the catalogue's rtx4090 decodes it at 38 tok/s alone
START_US = 1_780_000_000_000_000


def _served(running: int, waiting: int, kv: float, slots: int | None) -> list[protocol.ServedModel]:
    m = protocol.EngineMetrics(num_requests_running=running, num_requests_waiting=waiting,
                               kv_cache_usage_perc=kv, max_num_seqs=slots)
    return [protocol.ServedModel(model=MODEL, endpoint="http://127.0.0.1:9", engine="sim", metrics=m)]


@pytest.fixture
async def services(tmp_path):
    clock = VirtualClock(START_US)
    with clock.hold():
        s = await Services.start(router_settings(tmp_path, heartbeat_interval_s=2.0), clock=clock)
    try:
        yield s
    finally:
        await s.close()


async def _host(s: Services, name: str, served, *, passed: bool = True, decode_tps: float | None = None):
    host, _ = await s.fleet.enroll(name)
    check = protocol.CheckResult(model=MODEL, passed=passed, checked_us=START_US, summary="sim",
                                 decode_tps=decode_tps)
    s.fleet.register(host, protocol.Register(name=name, models=served, gpu_type="rtx4090", checks=[check]))
    return host


async def test_utilization_is_the_engines_busier_measure_averaged_over_routable_replicas(services):
    s = services
    with s.clock.hold():
        await _host(s, "a", _served(running=6, waiting=2, kv=0.10, slots=8))  # (6 + 2) / 8 = 1.0
        await _host(s, "b", _served(running=1, waiting=0, kv=0.50, slots=8))  # KV 0.5 > 1/8
        await _host(s, "failed-check", _served(running=8, waiting=9, kv=1.0, slots=8), passed=False)
        s.load.sample()
    load = s.load.load(MODEL, 60)
    assert load.replicas == 2  # the one whose hardware check failed takes no traffic: not capacity
    assert load.utilization == pytest.approx(0.75)
    assert load.waiting_per_replica == pytest.approx(1.0)
    # Capacity: 38 tok/s alone (catalogue, rtx4090, small) x min(8 slots, batch gain 16), per replica.
    assert load.capacity_tps == pytest.approx(2 * 38 * 8)


async def test_supply_lowers_the_demand_ratio_and_the_window_forgets_old_samples(services):
    s = services
    with s.clock.hold():
        await _host(s, "a", _served(0, 0, 0.0, None), decode_tps=50.0)  # measured: 50 x min(256, 16)
        for _ in range(3):
            s.metrics.live.record(model=MODEL, status="ok", prompt_tokens=10, completion_tokens=100, charged=1,
                          host_share=0, started_us=s.clock.now_us() - 1_000, first_byte_us=None,
                          finished_us=s.clock.now_us())
    await s.clock.sleep(4)  # under the 3 missed heartbeats (6 s) that take a host out
    one = s.load.load(MODEL, 60)
    assert one.capacity_tps == pytest.approx(800.0)
    assert one.demand_tps > 0 and one.demand_ratio == pytest.approx(one.demand_tps / 800.0)
    with s.clock.hold():
        await _host(s, "b", _served(0, 0, 0.0, None), decode_tps=50.0)
    two = s.load.load(MODEL, 60)
    assert two.capacity_tps == pytest.approx(1600.0)
    assert two.demand_ratio == pytest.approx(one.demand_ratio / 2)
    # Ten minutes on, the samples and the requests of the window are gone.
    await s.clock.sleep(600)
    later = s.load.load(MODEL, 60)
    assert later.demand_tps == 0.0 and 0 < later.samples <= 31


async def test_demand_is_a_rate_over_the_whole_minutes_counted_not_over_the_window_alone(tmp_path):
    # The live counters keep whole minutes: a 30 s window 10 s into a minute counts that minute
    # from its start, so the rate must divide by the time since then, not by 30 s (which read
    # demand up to twice too high, and made it drop at every minute boundary).
    minute = 60_000_000
    start = (START_US // minute + 1) * minute + 30_000_000  # 30 s into a minute
    clock = VirtualClock(start)
    with clock.hold():
        s = await Services.start(router_settings(tmp_path, heartbeat_interval_s=2.0), clock=clock)
    try:
        with clock.hold():
            s.metrics.live.record(model=MODEL, status="ok", prompt_tokens=0, completion_tokens=600, charged=1,
                                  host_share=0, started_us=start - 1_000, first_byte_us=None, finished_us=start)
        await clock.sleep(40)  # 10 s into the next minute
        load = s.load.load(MODEL, 30)  # counts both minutes: the first from the request on (40 s)
        assert load.demand_tps == pytest.approx(600 / 40, rel=1e-3)
    finally:
        await s.close()
