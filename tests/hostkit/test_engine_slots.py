"""The agent tells the router how many requests each engine runs at once (EngineMetrics.max_num_seqs):
the simulated engine's max_concurrency, or vLLM's --max-num-seqs when the engine's spec sets it.
Not among vLLM's metrics, so the agent fills it in from the configuration."""

from __future__ import annotations

from hostkit.config import AgentConfig
from hostkit.engine_probe import EngineProbe
from hostkit.engines import SimEngineRunner, VllmEngine, max_num_seqs
from hostkit.sim.engine import SimTiming
from tests.hostkit.conftest import FakeVllm, vllm_config


async def test_the_sim_engines_slots_reach_the_metrics_the_agent_reads(tmp_path):
    config = AgentConfig(router_url="http://127.0.0.1:9", host_token="tmh-x", models=["alpha-8b", "beta-70b"],
                         engine_port=0, sim=SimTiming(max_concurrency=5, speed=0), tls_dir=tmp_path)
    engine = SimEngineRunner(config)
    endpoints = await engine.start()
    try:
        assert [e.max_num_seqs for e in endpoints] == [5, 5]
        reading = await EngineProbe(endpoints, "sim", engine_key=engine.key).read()
        assert [(m.model, m.metrics.max_num_seqs) for m in reading.models] == [("alpha-8b", 5), ("beta-70b", 5)]
    finally:
        await engine.stop()


def test_vllm_slots_come_from_the_specs_extra_args():
    assert max_num_seqs(["--max-num-seqs", "8"]) == 8
    assert max_num_seqs(["--enforce-eager", "--max-num-seqs=12"]) == 12
    assert max_num_seqs([]) is None  # vLLM's own default, which it does not publish
    assert max_num_seqs(["--max-num-seqs", "many"]) is None and max_num_seqs(["--max-num-seqs", "0"]) is None
    assert max_num_seqs(["--max-num-seqs"]) is None


async def test_a_vllm_engine_advertises_its_configured_slots(fake_vllm: FakeVllm):
    base = vllm_config(fake_vllm, models=("alpha-8b", "beta-70b")).vllm.model_dump()["engines"]
    base[0]["extra_args"] = ["--max-num-seqs", "6"]
    engine = VllmEngine(vllm_config(fake_vllm, models=("alpha-8b", "beta-70b"), engines=base))
    try:
        endpoints = await engine.start()
        assert [(e.model, e.max_num_seqs) for e in endpoints] == [("alpha-8b", 6), ("beta-70b", None)]
    finally:
        await engine.stop()
