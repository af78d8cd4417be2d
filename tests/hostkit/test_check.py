"""The hardware check: each line against real or faked hardware, decode speed against a real
simulated engine over HTTP, the router line against a fake router, and `tokenmill-host check`."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hostkit.check import CheckLine, CheckReport, HostChecker, decode_line, disk_line, gpu_lines, router_line
from hostkit.cli import main
from hostkit.config import AgentConfig
from hostkit.decode_speed import measure_decode_speed
from hostkit.engine_spec import EngineSpec
from hostkit.nvml import HostGpus, NvmlReader
from hostkit.router_client import RouterClient
from hostkit.sim.engine import SimEngine, SimTiming, start_sim_engine
from tests.hostkit.fake_nvml import FakeGpu, fake_pynvml
from tests.hostkit.fake_router import TOKEN, FakeRouter
from tests.ports import free_port

MODEL = "alpha-8b"


def spec(**over: object) -> EngineSpec:
    requirements = {"vram_gb": 18.5, "min_compute_capability": "8.0", "expected_decode_tps": 38.0,
                    "weights_gb": 16.1, **over.pop("requirements", {})}  # type: ignore[dict-item]
    return EngineSpec.model_validate({"model": MODEL, "hf_id": "org/alpha-8b", "quantization": "bf16",
                                      "requirements": requirements, **over})


def gpus(*cards: FakeGpu) -> HostGpus:
    return NvmlReader(fake_pynvml(list(cards))).read()


def by_name(lines: list[CheckLine]) -> dict[str, CheckLine]:
    return {line.name: line for line in lines}


@pytest.fixture
async def slow_engine() -> AsyncIterator[SimEngine]:
    eng = await start_sim_engine([MODEL], timing=SimTiming(decode_tps=100, ttft_base_s=0.3))
    yield eng
    await eng.stop()


# -- GPU lines -------------------------------------------------------------------------------------


def test_a_card_that_fits_passes_with_what_was_measured() -> None:
    lines = by_name(gpu_lines(spec(), gpus(FakeGpu())))
    assert all(line.outcome == "pass" for line in lines.values())
    assert lines["driver"].measured == "550.54.15, CUDA 12.4"
    assert lines["vram"].measured == "23.2 GB (25.8 GB at 0.9)" and lines["vram"].required == "18.5 GB (bf16)"
    assert lines["compute capability"].measured == "8.9"


def test_too_little_memory_fails() -> None:
    lines = by_name(gpu_lines(spec(), gpus(FakeGpu(name="RTX 4080", total_mib=16376))))
    assert lines["vram"].outcome == "fail" and lines["vram"].measured.startswith("15.5 GB")


def test_memory_adds_up_over_tensor_parallel_gpus() -> None:
    big = spec(tensor_parallel_size=2, requirements={"vram_gb": 40.6})
    assert by_name(gpu_lines(big, gpus(FakeGpu(), FakeGpu())))["vram"].outcome == "pass"  # 2 x 25.8 x 0.9 = 46.4
    one = by_name(gpu_lines(big, gpus(FakeGpu())))
    assert one["vram"].outcome == "fail" and one["vram"].measured == "1 GPU(s)"
    assert "tensor_parallel_size 2" in one["vram"].required


def test_compute_capability_below_the_minimum_fails_and_weight_only_passes_with_a_note() -> None:
    fp8 = spec(quantization="fp8", requirements={"native_compute_capability": "8.9"})
    volta = by_name(gpu_lines(fp8, gpus(FakeGpu(cc=(7, 0)))))["compute capability"]
    assert volta.outcome == "fail" and volta.required == ">= 8.0"
    ampere = by_name(gpu_lines(fp8, gpus(FakeGpu(cc=(8, 6)))))["compute capability"]
    assert ampere.outcome == "pass" and ampere.measured == "8.6 (below 8.9: slower fp8 kernels)"
    hopper = by_name(gpu_lines(fp8, gpus(FakeGpu(cc=(10, 0)))))["compute capability"]
    assert hopper.outcome == "pass" and hopper.measured == "10.0"  # 10.0 is above 8.9, not below


def test_fields_the_driver_does_not_report_fail_their_lines_only() -> None:
    card = FakeGpu(unsupported={"nvmlDeviceGetMemoryInfo"})
    lines = by_name(gpu_lines(spec(), gpus(card)))
    assert lines["vram"].outcome == "fail" and "not reported" in lines["vram"].measured
    assert lines["compute capability"].outcome == "pass" and lines["driver"].outcome == "pass"


def test_no_nvml_fails_the_gpu_lines_with_the_reason() -> None:
    lines = gpu_lines(spec(), HostGpus.unavailable("nvidia-ml-py is not installed"))
    assert [line.outcome for line in lines] == ["fail"] * 3
    assert lines[0].measured == "nvidia-ml-py is not installed"


def test_the_simulated_engine_skips_the_gpu_lines() -> None:
    lines = gpu_lines(None, HostGpus.unavailable("simulated engine"))
    assert [(line.outcome, line.measured) for line in lines] == [("skip", "skipped (simulated engine)")] * 3
    assert CheckReport(MODEL, lines).passed


# -- disk ------------------------------------------------------------------------------------------


def test_disk_needs_room_for_what_is_not_cached_yet(tmp_path: Path) -> None:
    cache = tmp_path / "hub"  # not created yet: free space is read where it will be
    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    too_big = spec(requirements={"weights_gb": free_gb})  # +20% headroom does not fit
    line = disk_line(too_big, cache)
    assert line.outcome == "fail" and str(cache) in line.measured and "0.0 GB cached" in line.required
    # Most of it already downloaded (a sparse file: its size counts, it takes no space).
    blobs = cache / "models--org--alpha-8b" / "blobs"
    blobs.mkdir(parents=True)
    with open(blobs / "sha256-weights", "wb") as f:
        f.truncate(int(free_gb * 0.9 * 1e9))
    line = disk_line(too_big, cache)
    assert line.outcome == "pass", line
    assert disk_line(spec(requirements={"weights_gb": 0.01}), tmp_path / "other").outcome == "pass"


def test_a_local_checkpoint_needs_no_download(tmp_path: Path) -> None:
    line = disk_line(spec(hf_id=str(tmp_path), requirements={"weights_gb": 10**9}), tmp_path / "hub")
    assert line.outcome == "pass" and "local checkpoint" in line.measured


# -- router ----------------------------------------------------------------------------------------


async def test_router_line(router: FakeRouter) -> None:
    client = RouterClient(router.url, TOKEN)
    ok = await router_line(client)
    assert ok.outcome == "pass" and "host host-1 (active)" in ok.measured
    router.has_ping = False
    old = await router_line(client)
    assert old.outcome == "pass" and "token not verified" in old.measured
    await client.aclose()

    wrong = RouterClient(router.url, "tmh-wrong")
    router.has_ping = True
    refused = await router_line(wrong)
    assert refused.outcome == "fail" and "refused the host token" in refused.measured
    await wrong.aclose()

    gone = RouterClient(f"http://127.0.0.1:{free_port()}", TOKEN)
    down = await router_line(gone)
    assert down.outcome == "fail" and down.measured.startswith("unreachable")
    await gone.aclose()


# -- decode speed ----------------------------------------------------------------------------------


async def test_decode_speed_leaves_out_the_time_to_first_token(slow_engine: SimEngine) -> None:
    speed = await measure_decode_speed(slow_engine.url, MODEL)
    assert speed.ttft_s >= 0.3
    assert 70 <= speed.tokens_per_s <= 130  # 100 tok/s; with TTFT counted it would be far lower
    assert speed.tokens >= 8


async def test_decode_line_passes_at_half_the_estimate_and_fails_below(slow_engine: SimEngine) -> None:
    ok, tps = await decode_line(slow_engine.url, MODEL, 150.0, "test estimate")
    assert ok.outcome == "pass" and tps is not None and ok.required.startswith(">= 75.0 tok/s (50% of 150")
    slow, _ = await decode_line(slow_engine.url, MODEL, 400.0, "test estimate")
    assert slow.outcome == "fail" and slow.required.startswith(">= 200.0 tok/s")


async def test_decode_line_without_an_engine_or_with_a_refusing_one(slow_engine: SimEngine) -> None:
    none, tps = await decode_line(None, MODEL, 10.0, "x")
    assert none.outcome == "fail" and "not running" in none.measured and tps is None
    slow_engine.fail("refuse")
    refused, _ = await decode_line(slow_engine.url, MODEL, 10.0, "x")
    assert refused.outcome == "fail" and "HTTP 503" in refused.measured
    unknown, _ = await decode_line(f"http://127.0.0.1:{free_port()}", MODEL, 10.0, "x")
    assert unknown.outcome == "fail" and "no answer from the engine" in unknown.measured


async def test_the_agents_report_for_a_simulated_engine() -> None:
    config = AgentConfig(router_url="http://127.0.0.1:9", host_token=TOKEN, models=[MODEL],
                         sim=SimTiming(decode_tps=80, ttft_base_s=0))
    engine = await start_sim_engine([MODEL], timing=config.sim)
    try:
        report = await HostChecker(config, NvmlReader(fake_pynvml([]))).engine_report(MODEL, engine.url)
    finally:
        await engine.stop()
    assert [line.name for line in report.lines] == ["driver", "vram", "compute capability", "decode speed"]
    assert report.passed and report.decode_tps is not None and 60 <= report.decode_tps <= 100
    result = report.result()
    assert result.passed and result.summary.startswith("passed: decode speed ") and result.checked_us > 0
    assert "simulated engine's decode_tps" in report.lines[-1].required


def test_a_failed_report_says_what_failed() -> None:
    report = CheckReport(MODEL, [CheckLine("vram", "fail", "15.5 GB", "18.5 GB (bf16)"),
                                 CheckLine("driver", "pass", "550", "NVML")])
    assert not report.passed
    assert report.summary() == "FAILED: vram 15.5 GB (needs 18.5 GB (bf16))"
    table = report.table()
    assert table.splitlines()[0] == f"{MODEL}: FAIL" and "FAIL" in table.splitlines()[2]


# -- the CLI ---------------------------------------------------------------------------------------

SIM_CONFIG = f'''
router_url = "{{router}}"
host_token = "{TOKEN}"
name = "checked-host"
models = ["{MODEL}"]
[sim]
decode_tps = 200
ttft_base_s = 0
'''

VLLM_CONFIG = f'''
router_url = "{{router}}"
host_token = "{TOKEN}"
engine = "vllm"
engine_port = {{port}}
control_port = {{port}}
[[vllm.engines]]
model = "{MODEL}"
hf_id = "org/alpha-8b"
[vllm.engines.requirements]
vram_gb = 18.5
min_compute_capability = "8.0"
weights_gb = 0.001
'''


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_check_on_a_simulated_host_passes(router: FakeRouter, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(SIM_CONFIG.format(router=router.url))
    assert await cli("check", "--config", str(path)) == 0
    out = capsys.readouterr().out
    assert f"{MODEL}: PASS" in out and "skipped (simulated engine)" in out
    assert "router" in out and "host host-1 (active)" in out and "decode speed" in out

    assert await cli("check", "--config", str(path), "--json") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and result["model"] == MODEL and len(result["lines"]) == 6

    assert await cli("check", "--config", str(path), "--model", "nope") == 2
    assert "nope is not served by this host" in capsys.readouterr().err


async def test_cli_check_fails_without_gpu_telemetry_or_engine(router: FakeRouter, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # as on a host without nvidia-ml-py
    path = tmp_path / "agent.toml"
    path.write_text(VLLM_CONFIG.format(router=router.url, port=free_port()))
    assert await cli("check", "--config", str(path), "--model", MODEL) == 1
    out = capsys.readouterr().out
    assert f"{MODEL}: FAIL" in out and "nvidia-ml-py is not installed" in out
    assert "no answer from the engine" in out  # nothing listens on its port: the agent is not running
