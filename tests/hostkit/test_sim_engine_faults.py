"""Fault injection (/_sim/...), queueing and timing of the simulated engine, and its CLI process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

from hostkit.prometheus import parse_engine_metrics
from hostkit.sim.engine import SimEngine, SimTiming, start_sim_engine
from tests.hostkit.conftest import MODELS, eventually

CHAT = {"model": MODELS[0], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}


async def fail(engine: SimEngine, **body: object) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(engine.url + "/_sim/fail", json=body)
        resp.raise_for_status()


async def heal(engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(engine.url + "/_sim/heal")).raise_for_status()


async def health(engine: SimEngine) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(engine.url + "/health")).status_code


async def test_refuse_answers_503_until_healed(engine: SimEngine, client: openai.AsyncOpenAI) -> None:
    await fail(engine, mode="refuse")
    with pytest.raises(openai.InternalServerError) as err:
        await client.chat.completions.create(**CHAT)
    assert err.value.status_code == 503
    assert await health(engine) == 503
    await heal(engine)
    assert await health(engine) == 200
    await client.chat.completions.create(**CHAT)
    assert engine.requests_total == 2  # refused requests count as received


async def test_500_mode(engine: SimEngine, client: openai.AsyncOpenAI) -> None:
    await fail(engine, mode="500")
    with pytest.raises(openai.InternalServerError) as err:
        await client.completions.create(model=MODELS[0], prompt="x")
    assert err.value.status_code == 500


async def test_cut_after_closes_the_stream_mid_way(engine: SimEngine, client: openai.AsyncOpenAI) -> None:
    await fail(engine, mode="cut_after", after=4)
    assert await health(engine) == 200  # the engine looks healthy; only its streams break
    received = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        async for chunk in await client.chat.completions.create(**CHAT, stream=True):
            received.append(chunk)
    assert len(received) == 4
    with pytest.raises(openai.APIConnectionError):  # non-streaming: the connection closes with no reply
        await client.chat.completions.create(**CHAT)
    await eventually(lambda: engine.running == 0, what="slots released")
    await heal(engine)
    chunks = [c async for c in await client.chat.completions.create(**CHAT, stream=True)]
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_hang_holds_requests_until_healed(engine: SimEngine, client: openai.AsyncOpenAI) -> None:
    await fail(engine, mode="hang")
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(**CHAT, timeout=0.2)
    pending = asyncio.create_task(client.chat.completions.create(**CHAT))
    await asyncio.sleep(0.1)
    assert not pending.done()
    await heal(engine)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.usage is not None and reply.usage.completion_tokens == 10


async def test_stop_ends_hung_requests_promptly(client: openai.AsyncOpenAI, engine: SimEngine) -> None:
    engine.fail("hang")
    pending = asyncio.create_task(client.chat.completions.create(**CHAT))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(openai.APIConnectionError):
        await pending


async def test_bad_fault_mode_is_400(engine: SimEngine) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(engine.url + "/_sim/fail", json={"mode": "explode"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "mode"


async def test_requests_beyond_max_concurrency_wait_and_decode_takes_time() -> None:
    # 2 slots, 50 tok/s: each request takes ~10 / 50 = 0.2 s of decode; the third one waits.
    timing = SimTiming(decode_tps=50, ttft_base_s=0, max_concurrency=2, batch_capacity=2)
    engine = await start_sim_engine(MODELS, timing=timing)
    client = openai.AsyncOpenAI(base_url=engine.url + "/v1", api_key="x", max_retries=0)
    try:
        started = time.monotonic()
        tasks = [asyncio.create_task(client.chat.completions.create(**CHAT)) for _ in range(3)]
        await eventually(lambda: engine.running == 2 and engine.waiting == 1, what="2 running, 1 waiting")
        async with httpx.AsyncClient() as http:
            metrics = parse_engine_metrics((await http.get(engine.url + "/metrics")).text)[MODELS[0]]
        assert (metrics.num_requests_running, metrics.num_requests_waiting) == (2, 1)
        assert metrics.kv_cache_usage_perc > 0
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        assert 0.35 < elapsed < 2.0, elapsed  # two rounds of ~0.2 s
        assert engine.running == engine.waiting == 0
    finally:
        await client.close()
        await engine.stop()


async def test_cli_process_serves_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostkit.cli", "sim-engine", "--models", "m1,m2", "--port", "0", "--speed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        url = line.split(" at ")[1].split()[0]
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            assert [m.id for m in (await client.models.list()).data] == ["m1", "m2"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
