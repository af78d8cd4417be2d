"""`tokenmill-host serve-models` on a vLLM host (the fake `vllm` executable, real processes and HTTP,
the fake router): the engine of a model no longer wanted stops, the new one launches with the spec it
was handed, is checked, and the heartbeats report the new set; a model without a spec is refused."""

from __future__ import annotations

import os

import pytest

from hostkit.agent import Agent
from hostkit.engine_spec import EngineSpec
from hostkit.nvml import NvmlReader
from tests.hostkit.conftest import REQUIREMENTS, FakeVllm, eventually, vllm_config
from tests.hostkit.fake_nvml import FakeGpu, fake_pynvml
from tests.hostkit.fake_router import FakeRouter

OLD, NEW = "alpha-8b", "beta-8b"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_serve_models_stops_the_old_engine_and_launches_the_new(fake_vllm: FakeVllm,
                                                                      router: FakeRouter) -> None:
    agent = Agent(vllm_config(fake_vllm, router.url, models=(OLD,)), nvml=NvmlReader(fake_pynvml([FakeGpu()])))
    await agent.start()
    try:
        await eventually(lambda: router.heartbeats() and router.heartbeats()[-1].models[0].ready, 20, "OLD serving")
        old_pid = agent.engine.processes[OLD].pid  # type: ignore[attr-defined]

        with pytest.raises(ValueError, match=f"no vLLM engine spec for {NEW}"):
            await agent.serve_models([NEW])
        assert agent.status().models == [OLD] and alive(old_pid)

        spec = EngineSpec(model=NEW, hf_id=f"org/{NEW}", dtype="bfloat16", max_model_len=4096,
                          requirements=REQUIREMENTS)
        await agent.serve_models([NEW], [spec])
        assert agent.status().models == [NEW] and list(agent.engine.processes) == [NEW]  # type: ignore[attr-defined]
        await eventually(lambda: not alive(old_pid), 10, "the old engine stopped")

        def reported() -> bool:
            beat = router.heartbeats()[-1]
            return ([m.model for m in beat.models] == [NEW] and beat.models[0].ready
                    and [(c.model, c.passed) for c in beat.checks] == [(NEW, True)])
        await eventually(reported, 20, "heartbeats reporting the new model, checked")
    finally:
        await agent.stop(drain_timeout_s=0)
