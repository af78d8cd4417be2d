"""Fixtures for hostkit: a simulated engine that never sleeps, the real OpenAI SDK, a fake router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import openai
import pytest

from hostkit.sim_engine import SimEngine, SimTiming, start_sim_engine
from tests.hostkit.fake_router import FakeRouter

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
