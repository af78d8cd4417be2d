"""Fixtures for hostkit: a simulated engine that never sleeps, the real OpenAI SDK, a fake router,
and a fake `vllm` executable with an agent config that runs it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import pytest

from hostkit import vllm_process
from hostkit.config import AgentConfig
from hostkit.sim.engine import SimEngine, SimTiming, start_sim_engine
from tests.hostkit.fake_router import TOKEN, FakeRouter

MODELS = ["alpha-8b", "beta-70b"]


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll until predicate() is true; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def engine() -> AsyncIterator[SimEngine]:
    eng = await start_sim_engine(MODELS, timing=SimTiming(speed=0))
    yield eng
    await eng.stop()


@pytest.fixture
async def client(engine: SimEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=engine.url + "/v1", api_key="x", max_retries=0)
    yield c
    await c.close()


@pytest.fixture
async def router() -> AsyncIterator[FakeRouter]:
    r = FakeRouter()
    await r.start()
    yield r
    await r.stop()


FAKE_VLLM = Path(__file__).with_name("fake_vllm.py")
REQUIREMENTS = {"vram_gb": 1.2, "min_compute_capability": "8.0", "weights_gb": 1.0}


class FakeVllm:
    """The fake executable and the directory that steers it."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "fake-vllm"
        self.dir.mkdir()
        self.executable = root / "vllm"
        self.executable.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE_VLLM)!r}, "
                                   "run_name='__main__')\n")
        self.executable.chmod(0o755)

    def set(self, name: str, value: str = "") -> None:
        (self.dir / name).write_text(value)

    def clear(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)

    def launches(self) -> list[dict]:
        path = self.dir / "launches.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVllm:
    monkeypatch.setenv("FAKE_VLLM_DIR", str(tmp_path / "fake-vllm"))
    monkeypatch.setattr(vllm_process, "STARTING_POLL_S", 0.05)
    monkeypatch.setattr(vllm_process, "RUNNING_POLL_S", 0.05)
    return FakeVllm(tmp_path)


def vllm_config(fake: FakeVllm, router_url: str = "http://127.0.0.1:9", *, models: tuple[str, ...] = ("alpha-8b",),
                agent: dict[str, object] | None = None, **vllm: object) -> AgentConfig:
    settings: dict[str, object] = {
        "executable": str(fake.executable), "log_dir": str(fake.dir.parent / "logs"), "restart_initial_s": 0.05,
        "restart_max_s": 0.2, "stop_grace_s": 5, "health_timeout_s": 20, "unhealthy_restart_s": 0.3,
        "engines": [{"model": m, "hf_id": f"org/{m}", "dtype": "bfloat16", "max_model_len": 4096,
                     "requirements": REQUIREMENTS} for m in models],
    }
    settings.update(vllm)
    return AgentConfig.model_validate({
        "router_url": router_url, "host_token": TOKEN, "name": "gpu-host", "engine": "vllm", "engine_port": 0,
        "control_port": 0, "heartbeat_interval_s": 0.05, "retry_initial_s": 0.02, "retry_max_s": 0.1,
        "drain_timeout_s": 5, "vllm": settings, **(agent or {})})
