"""The agent running vLLM engines (the fake `vllm` executable, real processes and HTTP) with faked
NVML, against the fake router: GPU telemetry, hardware checks after every launch, drain frees the GPUs."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from hostkit.agent import Agent, run_agent
from hostkit.nvml import NvmlReader
from hostkit.protocol import CheckResult
from tests.hostkit.conftest import FakeVllm, eventually, vllm_config
from tests.hostkit.fake_nvml import FakeGpu, fake_pynvml
from tests.hostkit.fake_router import FakeRouter

MODEL = "alpha-8b"


def latest_check(router: FakeRouter) -> CheckResult | None:
    beats = router.heartbeats()
    return next((c for c in beats[-1].checks if c.model == MODEL), None) if beats else None


@pytest.fixture
async def agent(fake_vllm: FakeVllm, router: FakeRouter) -> AsyncIterator[Agent]:
    a = Agent(vllm_config(fake_vllm, router.url), nvml=NvmlReader(fake_pynvml([FakeGpu()])))
    await a.start()
    yield a
    await a.stop(drain_timeout_s=0)


async def test_reports_gpus_and_a_passing_check_once_the_engine_is_healthy(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: router.count("/hosts/register") == 1, what="registered")
    register = router.calls[0][1]
    assert register.driver_version == "550.54.15" and register.cuda_version == "12.4"
    assert register.gpus[0].name == "NVIDIA GeForce RTX 4090" and register.gpus[0].compute_capability == "8.9"
    await eventually(lambda: (c := latest_check(router)) is not None and c.passed, 20, "a passing check")
    check = latest_check(router)
    assert check is not None and "vram" in check.summary and "decode speed" in check.summary
    beat = router.heartbeats()[-1]
    assert beat.models[0].engine == "vllm" and beat.models[0].ready
    assert beat.models[0].max_model_len == 4096  # read from the engine's /v1/models (the spec launched it so)
    assert beat.gpus[0].processes[0].pid == 4242 and beat.gpus[0].memory_used_mib == 1024
    # The supervisor polls /health on its own schedule (the heartbeat's probe and the check may see the
    # engine healthy first, on a loaded machine by a whole poll): its state follows within a poll.
    await eventually(lambda: agent.status().engines[MODEL].startswith("healthy"), 10, "the supervisor sees it healthy")
    status = agent.status()
    assert status.checks == [check] and status.engines[MODEL].startswith("healthy")
    assert any("launched (pid" in e for e in status.engine_events)


async def test_a_card_below_the_requirement_fails_its_check(fake_vllm: FakeVllm, router: FakeRouter) -> None:
    agent = Agent(vllm_config(fake_vllm, router.url), nvml=NvmlReader(fake_pynvml([FakeGpu(cc=(7, 5))])))
    await agent.start()
    try:
        await eventually(lambda: latest_check(router) is not None, 20, "a check result")
        check = latest_check(router)
        assert check is not None and not check.passed
        assert "compute capability 7.5 (needs >= 8.0)" in check.summary
    finally:
        await agent.stop(drain_timeout_s=0)


async def test_a_relaunched_engine_is_checked_again(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: (c := latest_check(router)) is not None and c.passed, 20, "a passing check")
    first = latest_check(router)
    assert first is not None
    pid = agent.engine.processes[MODEL].pid  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: (c := latest_check(router)) is not None and c.checked_us > first.checked_us, 20,
                     "a new check of the relaunched engine")
    assert agent.engine.instance(MODEL) == 2


async def test_drained_frees_the_gpus_and_resume_relaunches(agent: Agent, router: FakeRouter) -> None:
    await eventually(lambda: (c := latest_check(router)) is not None and c.passed, 20, "a passing check")
    pid = agent.engine.processes[MODEL].pid  # type: ignore[attr-defined]
    assert await agent.drain(timeout_s=5) is True
    await eventually(lambda: agent.engine.processes[MODEL].state == "stopped", 10,  # type: ignore[attr-defined]
                     what="engine stopped once drained")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await eventually(lambda: agent.status().in_flight == 0, what="nothing in flight on a stopped engine")
    await agent.resume()
    await eventually(lambda: agent.engine.instance(MODEL) == 2 and (c := latest_check(router)) is not None
                     and c.passed, 20, "relaunched and checked again")


async def test_no_vllm_executable_means_exit_code_2_before_any_router_call(fake_vllm: FakeVllm,
                                                                            router: FakeRouter) -> None:
    config = vllm_config(fake_vllm, router.url, executable=str(fake_vllm.dir / "absent"))
    assert await run_agent(config) == 2
    assert router.calls == []
