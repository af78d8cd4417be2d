"""`tokenmill-host` drain|resume|status through the local control API, and `run` as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hostkit.agent import Agent
from hostkit.cli import main
from hostkit.control_api import ControlServer, start_control_api
from tests.hostkit.conftest import MODELS, FakeVllm, eventually, vllm_config
from tests.hostkit.fake_nvml import FakeGpu, fake_pynvml
from tests.hostkit.fake_router import TOKEN, FakeRouter
from tests.hostkit.test_agent import config


@pytest.fixture
async def control(router: FakeRouter) -> AsyncIterator[tuple[Agent, ControlServer]]:
    agent = Agent(config(router.url))
    await agent.start()
    server = await start_control_api(agent, port=0)
    await eventually(lambda: agent.state == "active")
    yield agent, server
    await agent.stop(drain_timeout_s=0)
    await server.stop()


async def cli(*argv: str) -> int:
    """Run the CLI in a thread: it runs its own event loop, as it does from a shell."""
    return await asyncio.to_thread(main, list(argv))


async def test_status_drain_resume(control: tuple[Agent, ControlServer], router: FakeRouter,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    agent, server = control
    port = str(server.port)
    assert await cli("status", "--control-port", port) == 0
    out = capsys.readouterr().out
    assert "active" in out and "host-1" in out and MODELS[0] in out and TOKEN not in out
    assert f"check {MODELS[0]}" in out and "PASS passed: " in out and f"engine {MODELS[0]}" in out

    assert await cli("status", "--control-port", port, "--json") == 0
    assert json.loads(capsys.readouterr().out)["router_reachable"] is True

    assert await cli("drain", "--control-port", port, "--timeout", "5") == 0
    assert capsys.readouterr().out.strip().endswith("drained")
    assert agent.state == "drained" and "/hosts/drain" in router.paths()

    assert await cli("resume", "--control-port", port) == 0
    assert "resumed (state: active)" in capsys.readouterr().out
    assert router.paths().count("/hosts/resume") == 1


async def test_drain_timeout_exits_non_zero_with_progress(control: tuple[Agent, ControlServer], router: FakeRouter,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, server = control
    router.outstanding = 3  # the router never lets go
    assert await cli("drain", "--control-port", str(server.port), "--timeout", "1.5") == 1
    captured = capsys.readouterr()
    assert "3 outstanding at the router" in captured.out
    assert "not drained" in captured.err


async def test_the_engine_key_is_given_on_its_own_path_and_only_to_loopback(
        control: tuple[Agent, ControlServer], capsys: pytest.CaptureFixture[str]) -> None:
    agent, server = control
    key = agent.engine.key
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/engine-key")).json() == {"engine_key": key}
        assert key not in (await http.get("/status")).text
        # A web page that rebinds its own name to 127.0.0.1 sends that name as the Host.
        rebound = await http.get("/engine-key", headers={"Host": f"evil.example:{server.port}"})
        assert rebound.status_code == 403 and key not in rebound.text
    assert await cli("status", "--control-port", str(server.port), "--json") == 0
    assert await cli("status", "--control-port", str(server.port)) == 0
    assert key not in capsys.readouterr().out


async def test_no_agent_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("status", "--control-port", "1") == 1
    assert "no agent answers" in capsys.readouterr().err


async def test_run_process_registers_then_leaves_cleanly_on_sigterm(router: FakeRouter, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('name = "proc-host"\n[sim]\nspeed = 0\n')
    env = {
        **os.environ,
        "TOKENMILL_HOST_ROUTER_URL": router.url,
        "TOKENMILL_HOST_HOST_TOKEN": TOKEN,
        "TOKENMILL_HOST_MODELS": ",".join(MODELS),
        "TOKENMILL_HOST_ENGINE_PORT": "0",
        "TOKENMILL_HOST_CONTROL_PORT": "0",
        "TOKENMILL_HOST_HEARTBEAT_INTERVAL_S": "0.05",
        "TOKENMILL_HOST_LOG_LEVEL": "DEBUG",
    }
    proc = subprocess.Popen([sys.executable, "-m", "hostkit.cli", "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await eventually(lambda: router.count("/hosts/heartbeat") >= 2 or proc.poll() is not None, timeout_s=15,
                         what="the agent process to heartbeat")
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert router.paths()[-1] == "/hosts/deregister"
    assert "registered with" in stderr and TOKEN not in stderr
    assert router.calls[0][1].name == "proc-host"
    engine_key = router.calls[0][1].engine_key  # made at start, told the router, logged nowhere (DEBUG included)
    assert engine_key and engine_key not in stderr


async def test_run_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('router_url = "http://r"\nhost_token = "tmh-x"\nmodels = []\n')
    assert await cli("run", "--config", str(path)) == 2
    assert f"{path}: field models" in capsys.readouterr().err


async def test_check_finds_a_running_agents_vllm_engines(fake_vllm: FakeVllm, router: FakeRouter, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([FakeGpu()]))  # `check` reads NVML itself
    config = vllm_config(fake_vllm, router.url)
    agent = Agent(config)
    await agent.start()
    server = await start_control_api(agent, port=0)
    try:
        await eventually(lambda: agent.engine.describe()["alpha-8b"].startswith("healthy"), 20, "engine healthy")
        path = tmp_path / "agent.toml"  # the same host, as the operator's file describes it
        path.write_text(f'router_url = "{router.url}"\nhost_token = "{TOKEN}"\nengine = "vllm"\n'
                        '[[vllm.engines]]\nmodel = "alpha-8b"\nhf_id = "org/alpha-8b"\n'
                        '[vllm.engines.requirements]\nvram_gb = 1.2\nmin_compute_capability = "8.0"\n'
                        'weights_gb = 0.001\n')
        assert await cli("check", "--config", str(path), "--control-port", str(server.port)) == 0
        out = capsys.readouterr().out
        assert "alpha-8b: PASS" in out and "550.54.15, CUDA 12.4" in out and "tok/s" in out
    finally:
        await agent.stop(drain_timeout_s=0)
        await server.stop()
