"""The hardware check: can this host serve a model as the catalogue promises?

One line per check, each with what was measured and what is required:
- driver: NVML answers (an NVIDIA driver is loaded);
- vram: the memory vLLM may use on the model's GPUs (total x gpu_memory_utilization) holds the
  model at its quantization;
- compute capability: at least what the quantization's kernels need (between the minimum and
  the native level the model runs on slower kernels: it passes, and says so);
- disk: room in the Hugging Face cache for the part of the weights not downloaded yet;
- router: the router answers GET /hosts/ping and accepts the host token;
- decode speed: single-stream decode tokens/s through the engine's OpenAI API, at least
  DECODE_TOLERANCE of the catalogue's estimate for this GPU type.

`tokenmill-host check` runs them all. The agent runs the engine-side ones (driver, vram, compute
capability, decode speed) for each model once its engine is healthy, and after every restart,
and reports the outcome to the router, which routes to a model only while its check passes.
The router and disk lines are left out there: heartbeats prove the first, and a running
engine has its weights. With the simulated engine the GPU and disk lines are skipped (there is
no GPU to ask), but decode speed is still measured against the simulated engine's own timing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hostkit.config import AgentConfig
from hostkit.decode_speed import DecodeMeasurementError, measure_decode_speed
from hostkit.engine_spec import EngineSpec, compute_capability
from hostkit.engine_tls import EngineTlsError, ensure_engine_cert
from hostkit.nvml import HostGpus, NvmlReader
from hostkit.protocol import CheckResult
from hostkit.router_client import RouterClient, RouterRejected, RouterUnreachable

# Pass at half the catalogue's estimate. The estimate is memory bandwidth / weight bytes x 0.6 for
# a representative model of the size class: real single-stream speed differs from it by a third
# either way with the model, the kernels (weight-only FP8 on Ampere), clocks and driver, and one
# short measurement adds its own noise. Half is outside that spread, and still catches what the
# check is for: a throttled or shared GPU, weights spilled to CPU memory, a slow PCIe riser
# between tensor-parallel GPUs, a slower card than the one the host was enrolled as.
DECODE_TOLERANCE = 0.5
# Parameter-count estimates miss the unquantized embeddings of int4 checkpoints (up to a tenth of
# their size), tokenizer and config files, and the download's temporary files.
DISK_HEADROOM = 1.2
SIMULATED = "skipped (simulated engine)"

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckLine:
    name: str
    outcome: Outcome
    measured: str
    required: str


@dataclass(frozen=True)
class CheckReport:
    model: str
    lines: list[CheckLine]
    decode_tps: float | None = None

    @property
    def passed(self) -> bool:
        return all(line.outcome != "fail" for line in self.lines)

    def summary(self) -> str:
        """One line for the router and the console: what failed, else the measured figures."""
        failed = [f"{line.name} {line.measured} (needs {line.required})" for line in self.lines
                  if line.outcome == "fail"]
        if failed:
            return "FAILED: " + "; ".join(failed)
        checked = [f"{line.name} {line.measured}" for line in self.lines if line.outcome == "pass"]
        return "passed: " + "; ".join(checked)

    def result(self, checked_us: int | None = None) -> CheckResult:
        return CheckResult(model=self.model, passed=self.passed, summary=self.summary(),
                           checked_us=checked_us if checked_us is not None else time.time_ns() // 1000,
                           decode_tps=round(self.decode_tps, 1) if self.decode_tps is not None else None)

    def table(self) -> str:
        rows = [("CHECK", "RESULT", "MEASURED", "REQUIRED")]
        rows += [(line.name, line.outcome.upper(), line.measured, line.required) for line in self.lines]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        body = "\n".join(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)
        return f"{self.model}: {'PASS' if self.passed else 'FAIL'}\n{body}"


# -- the GPU lines ---------------------------------------------------------------------------------


def gpu_lines(spec: EngineSpec | None, host: HostGpus) -> list[CheckLine]:
    """driver, vram and compute capability; skipped without a spec (the simulated engine)."""
    if spec is None:
        return [CheckLine(name, "skip", SIMULATED, "-") for name in ("driver", "vram", "compute capability")]
    need = spec.requirements
    if not host.available:
        why = host.reason or "NVML unavailable"
        return [CheckLine("driver", "fail", why, "an NVIDIA driver with NVML"),
                CheckLine("vram", "fail", "unknown (no NVML)", f"{need.vram_gb:.1f} GB ({spec.quantization})"),
                CheckLine("compute capability", "fail", "unknown (no NVML)", f">= {need.min_compute_capability}")]
    driver = CheckLine("driver", "pass", f"{host.driver_version or 'version unknown'}, CUDA {host.cuda_version or '?'}",
                       "an NVIDIA driver with NVML")
    by_index = {g.index: g for g in host.gpus}
    missing = [i for i in spec.gpu_indices if i not in by_index]
    if missing:
        have = f"{len(host.gpus)} GPU(s)"
        want = f"GPUs {', '.join(map(str, spec.gpu_indices))} (tensor_parallel_size {spec.tensor_parallel_size})"
        return [driver, CheckLine("vram", "fail", have, want), CheckLine("compute capability", "fail", have, want)]
    gpus = [by_index[i] for i in spec.gpu_indices]
    return [driver, _vram_line(spec, [g.memory_total_mib for g in gpus]),
            _capability_line(spec, [g.compute_capability for g in gpus])]


def _vram_line(spec: EngineSpec, totals_mib: list[int | None]) -> CheckLine:
    need = spec.requirements.vram_gb
    required = f"{need:.1f} GB ({spec.quantization})"
    if any(t is None for t in totals_mib):
        return CheckLine("vram", "fail", "memory size not reported by the driver", required)
    total_gb = sum(t for t in totals_mib if t is not None) * 1024 * 1024 / 1e9  # the catalogue counts 10^9 bytes
    usable = total_gb * spec.gpu_memory_utilization
    cards = f"{len(totals_mib)} x " if len(totals_mib) > 1 else ""
    measured = f"{usable:.1f} GB ({cards}{total_gb / len(totals_mib):.1f} GB at {spec.gpu_memory_utilization:g})"
    return CheckLine("vram", "pass" if usable >= need else "fail", measured, required)


def _capability_line(spec: EngineSpec, capabilities: list[str | None]) -> CheckLine:
    need = spec.requirements
    required = f">= {need.min_compute_capability}"
    if any(c is None for c in capabilities):
        return CheckLine("compute capability", "fail", "not reported by the driver", required)
    lowest = min((c for c in capabilities if c is not None), key=compute_capability)
    if compute_capability(lowest) < compute_capability(need.min_compute_capability):
        return CheckLine("compute capability", "fail", lowest, required)
    native = need.native_compute_capability
    if native and compute_capability(lowest) < compute_capability(native):
        # fp8 runs weight-only (W8A16) below 8.9; int4 goes without the Marlin kernels below 8.0.
        return CheckLine("compute capability", "pass", f"{lowest} (below {native}: slower {spec.quantization} kernels)",
                         required)
    return CheckLine("compute capability", "pass", lowest, required)


# -- disk and router (the setup check only) -------------------------------------------------------


def hf_cache_dir(configured: Path | None) -> Path:
    """Where vLLM puts downloaded weights: the same rules as huggingface_hub."""
    if configured is not None:
        return configured
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def disk_line(spec: EngineSpec | None, cache: Path) -> CheckLine:
    """Blocking (walks the cache): call it in a thread from async code."""
    if spec is None:
        return CheckLine("disk", "skip", SIMULATED, "-")
    local = Path(spec.hf_id).expanduser()
    if local.is_dir():
        return CheckLine("disk", "pass", f"local checkpoint at {local}", "the weights on disk")
    cached = _cached_gb(cache / f"models--{spec.hf_id.replace('/', '--')}")
    need = max(0.0, spec.requirements.weights_gb * DISK_HEADROOM - cached)
    existing = next((p for p in [cache, *cache.parents] if p.exists()), Path("/"))
    try:
        free = shutil.disk_usage(existing).free / 1e9
    except OSError as exc:
        return CheckLine("disk", "fail", f"cannot read free space at {existing}: {exc}", f"{need:.1f} GB")
    required = f"{need:.1f} GB ({spec.requirements.weights_gb:.1f} GB of weights +20%, {cached:.1f} GB cached)"
    return CheckLine("disk", "pass" if free >= need else "fail", f"{free:.1f} GB free in {cache}", required)


def _cached_gb(model_dir: Path) -> float:
    blobs = model_dir / "blobs"
    if not blobs.is_dir():
        return 0.0
    return sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) / 1e9


async def router_line(router: RouterClient) -> CheckLine:
    required = "reachable, host token accepted"
    started = time.monotonic()
    try:
        reply = await router.ping()
    except RouterUnreachable as exc:
        return CheckLine("router", "fail", f"unreachable: {exc}", required)
    except RouterRejected as exc:
        if exc.status in (404, 405):  # a router from before /hosts/ping: it answered, the token is untested
            return CheckLine("router", "pass", f"reachable at {router.base_url} (older router: token not "
                                               "verified)", required)
        return CheckLine("router", "fail", f"refused the host token: {exc}", required)
    ms = (time.monotonic() - started) * 1000
    return CheckLine("router", "pass", f"{ms:.0f} ms round trip, host {reply.host_id} ({reply.state})", required)


# -- decode speed ---------------------------------------------------------------------------------


def expected_decode_tps(config: AgentConfig, spec: EngineSpec | None) -> tuple[float | None, str]:
    """The estimate the measurement is held to, and where it comes from."""
    if spec is not None:
        return spec.requirements.expected_decode_tps, f"the catalogue's estimate for {config.gpu_type or 'this GPU'}"
    if config.sim.speed == 0:  # a simulated engine that never sleeps has no speed to hold it to
        return None, "the simulated engine at speed 0"
    return config.sim.decode_tps * config.sim.speed, "the simulated engine's decode_tps"


async def decode_line(engine_url: str | None, model: str, expected: float | None, source: str,
                      engine_key: str | None = None,
                      verify: ssl.SSLContext | bool = True) -> tuple[CheckLine, float | None]:
    if expected is not None:
        minimum = expected * DECODE_TOLERANCE
        required = f">= {minimum:.1f} tok/s ({DECODE_TOLERANCE:.0%} of {expected:g}, {source})"
    else:
        minimum, required = 0.0, f"any (no estimate: {source})"
    if engine_url is None:
        return CheckLine("decode speed", "fail", "the engine is not running (start `tokenmill-host run`)",
                         required), None
    try:
        speed = await measure_decode_speed(engine_url, model, engine_key=engine_key, verify=verify)
    except DecodeMeasurementError as exc:
        return CheckLine("decode speed", "fail", str(exc), required), None
    tps = speed.tokens_per_s
    shown = f"{tps:.1f} tok/s" if tps < 1e5 else "instant"
    measured = f"{shown} over {speed.tokens} tokens (TTFT {speed.ttft_s:.2f} s)"
    return CheckLine("decode speed", "pass" if tps >= minimum else "fail", measured, required), tps


# -- whole reports --------------------------------------------------------------------------------


class HostChecker:
    """Runs the checks for one host's models; shared by the agent and `tokenmill-host check`."""

    def __init__(self, config: AgentConfig, nvml: NvmlReader) -> None:
        self.config = config
        self.nvml = nvml

    async def _gpus(self, spec: EngineSpec | None) -> HostGpus:
        if spec is None:  # the simulated engine: whatever GPU this machine has is not what it serves on
            return HostGpus.unavailable("simulated engine")
        return await self.nvml.read_async()

    async def engine_report(self, model: str, engine_url: str | None, engine_key: str | None = None) -> CheckReport:
        """What the agent runs for a model once its engine is healthy (`engine_key`: the engine's bearer key)."""
        spec = self.config.engine_spec(model)
        lines = gpu_lines(spec, await self._gpus(spec))
        expected, source = expected_decode_tps(self.config, spec)
        decode, tps = await decode_line(engine_url, model, expected, source, engine_key, self._engine_verify())
        return CheckReport(model, [*lines, decode], tps)

    def _engine_verify(self) -> ssl.SSLContext | bool:
        """Trust exactly the engines' certificate when they speak TLS."""
        if not self.config.uses_tls:
            return True
        try:
            return ensure_engine_cert(self.config.tls_dir).client_context()
        except EngineTlsError:
            return True  # nothing to pin: the measurement fails, saying why

    async def setup_report(self, model: str, engine_url: str | None, router: RouterClient | None,
                           engine_key: str | None = None) -> CheckReport:
        """Everything, for `tokenmill-host check` (`router` None: no host token yet, router not checked)."""
        spec = self.config.engine_spec(model)
        lines = gpu_lines(spec, await self._gpus(spec))
        lines.append(await asyncio.to_thread(disk_line, spec, hf_cache_dir(self.config.vllm.hf_cache_dir)))
        if router is None:
            lines.append(CheckLine("router", "skip", "not checked: no host token or router URL configured yet",
                                   "reachable, host token accepted"))
        else:
            lines.append(await router_line(router))
        expected, source = expected_decode_tps(self.config, spec)
        decode, tps = await decode_line(engine_url, model, expected, source, engine_key, self._engine_verify())
        return CheckReport(model, [*lines, decode], tps)
