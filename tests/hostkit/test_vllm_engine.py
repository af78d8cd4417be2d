"""The vLLM engine supervisor with real processes: a fake `vllm` executable (tests/hostkit/fake_vllm.py)
that serves the simulated engine over real HTTP, crashes, hangs at start or ignores SIGTERM on demand."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hostkit import vllm_process
from hostkit.engine_probe import EngineProbe
from hostkit.engines import EngineUnavailable, VllmEngine
from tests.hostkit.conftest import FakeVllm, eventually, vllm_config


@pytest.fixture
async def engine(fake_vllm: FakeVllm) -> AsyncIterator[VllmEngine]:
    eng = VllmEngine(vllm_config(fake_vllm, models=("alpha-8b", "beta-70b")))
    yield eng
    await eng.stop()


def healthy(engine: VllmEngine, model: str) -> bool:
    return engine.processes[model].state == "healthy"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_one_process_per_model_on_its_own_port_then_stopped(engine: VllmEngine, fake_vllm: FakeVllm) -> None:
    endpoints = await engine.start()
    assert [e.model for e in endpoints] == ["alpha-8b", "beta-70b"]
    assert len({e.local_url for e in endpoints}) == 2  # one server per model
    await eventually(lambda: healthy(engine, "alpha-8b") and healthy(engine, "beta-70b"), 20, "both healthy")

    launched = {launch["argv"][3]: launch for launch in fake_vllm.launches()}
    argv = launched["alpha-8b"]["argv"]
    port = engine.processes["alpha-8b"].port
    assert argv[:2] == ["serve", "org/alpha-8b"]
    assert argv[argv.index("--port") + 1] == str(port) and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert "--enable-prefix-caching" in argv and argv[argv.index("--max-model-len") + 1] == "4096"

    # Real HTTP: health, and vLLM's metrics under the served model name, as the agent reads them.
    reading = await EngineProbe(endpoints, "vllm", engine_key=engine.key).read()
    assert all(m.ready and m.metrics is not None for m in reading.models)
    log = (fake_vllm.dir.parent / "logs" / "vllm-alpha-8b.log").read_text()
    assert "tokenmill-host launch 1: " in log and "fake vllm: serving alpha-8b" in log

    pids = [p.pid for p in engine.processes.values()]
    assert all(pid is not None and alive(pid) for pid in pids)
    await engine.stop()
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert sum("stopped (pid" in e and "exited with code 0" in e for e in engine.recent_events()) == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoints[0].local_url + "/health")


async def test_a_crashed_engine_is_relaunched_with_growing_backoff(fake_vllm: FakeVllm) -> None:
    fake_vllm.set("crash_starts", "3")
    engine = VllmEngine(vllm_config(fake_vllm))
    try:
        await engine.start()
        await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy after three crashes")
        assert engine.instance("alpha-8b") == 4 and len(fake_vllm.launches()) == 4
        relaunches = [e for e in engine.recent_events() if "relaunching in" in e]
        assert [e.split("relaunching in ")[1].split(" s ")[0] for e in relaunches] == ["0.05", "0.1", "0.2"]
        assert all("exited with code 3 while starting" in e for e in relaunches)
        assert str(engine.processes["alpha-8b"].log_path) in relaunches[0]  # the operator is told where to look
        assert "3 restart(s)" in engine.describe()["alpha-8b"]
    finally:
        await engine.stop()


async def test_backoff_doubles_up_to_its_cap(fake_vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = vllm_process.asyncio.sleep

    async def recording_sleep(delay: float) -> None:  # the back-off's waits, without waiting 15 s
        if delay >= 1:
            slept.append(delay)
            delay = 0
        await real_sleep(delay)

    monkeypatch.setattr(vllm_process.asyncio, "sleep", recording_sleep)
    fake_vllm.set("crash_starts", "5")
    engine = VllmEngine(vllm_config(fake_vllm, restart_initial_s=1, restart_max_s=4))
    try:
        await engine.start()
        await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy after five crashes")
    finally:
        await engine.stop()
    assert slept[:5] == [1, 2, 4, 4, 4]


async def test_a_killed_engine_is_relaunched_and_gets_a_new_instance(engine: VllmEngine, fake_vllm: FakeVllm) -> None:
    await engine.start()
    await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
    first = engine.processes["alpha-8b"].pid
    assert first is not None and engine.instance("alpha-8b") == 1
    os.kill(first, signal.SIGKILL)  # a crash: CUDA error, OOM killer
    await eventually(lambda: engine.instance("alpha-8b") == 2 and healthy(engine, "alpha-8b"), 20, "relaunched")
    assert engine.processes["alpha-8b"].pid not in (None, first)
    assert any("was killed by SIGKILL" in e and "relaunching" in e for e in engine.recent_events())
    assert engine.instance("beta-70b") == 1  # the other model's engine is untouched


async def test_an_engine_that_never_gets_healthy_is_relaunched(fake_vllm: FakeVllm) -> None:
    fake_vllm.set("start_delay_s", "30")
    engine = VllmEngine(vllm_config(fake_vllm, health_timeout_s=0.5))
    try:
        await engine.start()
        await eventually(lambda: engine.instance("alpha-8b") >= 2, 20, "a second launch")
        assert any("not healthy within 0.5 s" in e for e in engine.recent_events())
        first_launch = next(e for e in engine.recent_events() if "launched (pid" in e)
        first_pid = int(first_launch.split("launched (pid ")[1].split(",")[0])
        await eventually(lambda: not alive(first_pid), 10, "the hung launch stopped")
    finally:
        await engine.stop()


async def test_sigterm_ignored_means_sigkill_after_the_grace_period(fake_vllm: FakeVllm) -> None:
    fake_vllm.set("ignore_sigterm")
    engine = VllmEngine(vllm_config(fake_vllm, stop_grace_s=0.5))
    await engine.start()
    await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
    pid = engine.processes["alpha-8b"].pid
    assert pid is not None
    await engine.stop()
    assert not alive(pid)
    events = engine.recent_events()
    assert any("ignored SIGTERM for 0.5 s; sending SIGKILL" in e for e in events)
    assert any("was killed by SIGKILL" in e for e in events)


async def test_devices_and_cache_reach_the_process(fake_vllm: FakeVllm, tmp_path: Path) -> None:
    config = vllm_config(fake_vllm, hf_cache_dir=str(tmp_path / "hf"))
    spec = config.vllm.engines[0].model_copy(update={"devices": [1], "port": 0})
    config = config.model_copy(update={"vllm": config.vllm.model_copy(update={"engines": [spec]})})
    engine = VllmEngine(config)
    try:
        await engine.start()
        await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
    finally:
        await engine.stop()
    env = fake_vllm.launches()[0]["env"]
    assert (env["CUDA_VISIBLE_DEVICES"], env["HF_HUB_CACHE"]) == ("1", str(tmp_path / "hf"))


async def test_vllm_is_locked_with_the_engine_key_which_no_log_or_command_line_shows(
        fake_vllm: FakeVllm, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")  # kept, after the guard's directory
    fake_vllm.set("crash_starts", "1")  # a relaunch keeps the key the router already has
    engine = VllmEngine(vllm_config(fake_vllm))
    key = engine.key
    try:
        [endpoint] = await engine.start()
        await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
        async with httpx.AsyncClient(base_url=endpoint.local_url) as http:
            assert (await http.get("/health")).status_code == 200 and (await http.get("/metrics")).status_code == 401
            assert (await http.get("/metrics", headers={"Authorization": f"Bearer {key}"})).status_code == 200
            body = {"model": "alpha-8b", "prompt": "hi", "max_tokens": 2}
            refused = await http.post("/v1/completions", json=body)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            wrong = await http.post("/v1/completions", json=body, headers={"Authorization": "Bearer " + "x" * 43})
            assert wrong.status_code == 401
            ok = await http.post("/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    finally:
        await engine.stop()

    launches = fake_vllm.launches()
    assert len(launches) == 2 and all(launch["env"]["VLLM_API_KEY"] == key for launch in launches)
    guard_dir = str(vllm_process.GUARD_DIR)
    assert launches[0]["env"]["PYTHONPATH"] == os.pathsep.join([guard_dir, "/somewhere/else"])
    argv = launches[0]["argv"]
    assert argv[argv.index("--middleware") + 1] == "tokenmill_engine_guard.EngineKeyGuard"  # loaded by fake vllm
    # The key is in vLLM's environment only: not on its command line (`ps`), not in the launch header the
    # agent writes to the engine's log, not in the agent's log or the engine events.
    assert not any(key in a for launch in launches for a in launch["argv"])
    engine_log = (fake_vllm.dir.parent / "logs" / "vllm-alpha-8b.log").read_text()
    assert engine_log.count("tokenmill-host launch ") == 2 and key not in engine_log
    assert key not in caplog.text and not any(key in e for e in engine.recent_events())
    assert "launched (pid" in caplog.text


def test_a_spec_cannot_give_vllm_another_key() -> None:
    from hostkit.engine_spec import EngineSpec

    with pytest.raises(ValueError, match="must not set --api-key"):
        EngineSpec(model="m", hf_id="org/m", extra_args=["--api-key", "mine"],
                   requirements={"vram_gb": 1, "min_compute_capability": "8.0", "weights_gb": 1})


async def test_suspend_frees_the_gpu_and_resume_relaunches(engine: VllmEngine) -> None:
    await engine.start()
    await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
    pid = engine.processes["alpha-8b"].pid
    assert await engine.suspend() is True
    assert pid is not None and not alive(pid) and engine.processes["alpha-8b"].state == "stopped"
    await engine.resume()
    await eventually(lambda: healthy(engine, "alpha-8b") and engine.instance("alpha-8b") == 2, 20, "relaunched")


async def test_a_missing_executable_is_reported_before_anything_starts(fake_vllm: FakeVllm) -> None:
    engine = VllmEngine(vllm_config(fake_vllm, executable=str(fake_vllm.dir / "no-such-vllm")))
    with pytest.raises(EngineUnavailable, match="no-such-vllm' is not found"):
        await engine.start()
    assert fake_vllm.launches() == []


async def test_each_engine_is_advertised_on_its_mapped_public_port(fake_vllm: FakeVllm) -> None:
    base = vllm_config(fake_vllm, models=("alpha-8b", "beta-70b"))
    config = base.model_copy(update={"engine_port": 18401, "advertise_host": "74.48.78.46",
                                     "advertise_ports": {18401: 41234}})
    engine = VllmEngine(config)
    try:
        alpha, beta = await engine.start()
    finally:
        await engine.stop()
    # Reached off loopback: TLS, the agent's own reads included.
    assert (alpha.local_url, alpha.public_url) == ("https://127.0.0.1:18401", "https://74.48.78.46:41234")
    assert beta.public_url == "https://74.48.78.46:18402"  # not mapped: its own port


async def test_vllm_serves_tls_with_the_hosts_certificate_and_the_agent_trusts_exactly_it(
        fake_vllm: FakeVllm, tmp_path) -> None:
    engine = VllmEngine(vllm_config(fake_vllm, agent={"engine_tls": "on", "tls_dir": str(tmp_path / "tls")}))
    try:
        [endpoint] = await engine.start()
        assert endpoint.local_url.startswith("https://") and endpoint.public_url.startswith("https://")
        # The supervisor's /health polls go over TLS, trusting the host's own certificate.
        await eventually(lambda: healthy(engine, "alpha-8b"), 20, "healthy")
        async with httpx.AsyncClient(base_url=endpoint.local_url, verify=engine.tls.client_context()) as http:
            assert (await http.get("/health")).status_code == 200
        with pytest.raises(httpx.ConnectError):  # anyone else's trust store: a self-signed certificate
            async with httpx.AsyncClient(base_url=endpoint.local_url) as http:
                await http.get("/health")
    finally:
        await engine.stop()
    argv = fake_vllm.launches()[0]["argv"]
    assert argv[argv.index("--ssl-certfile") + 1] == str(tmp_path / "tls" / "engine-cert.pem")
    assert argv[argv.index("--ssl-keyfile") + 1] == str(tmp_path / "tls" / "engine-key.pem")
