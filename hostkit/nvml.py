"""GPU telemetry from NVML, through nvidia-ml-py (`import pynvml`), imported only when first read.

A host without the module or without a working driver reports "no GPU" (with the reason) and
never raises: the agent keeps heartbeating. Each field is read on its own, because drivers and
cards differ in what they support (consumer cards have no power limit readout under some
drivers, containers hide processes): one NVMLError makes that one field None.

NVML calls block (tens of milliseconds on a busy driver), so async code must use `read_async`,
which runs the read in a worker thread; `read` is for threads and the CLI.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from hostkit.protocol import GpuProcess, GpuTelemetry

log = logging.getLogger(__name__)
T = TypeVar("T")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class HostGpus:
    """One NVML reading of the whole host."""

    available: bool
    reason: str | None = None  # why NVML is unavailable, for the operator
    driver_version: str | None = None
    cuda_version: str | None = None  # highest CUDA version the driver supports, e.g. "12.4"
    gpus: list[GpuTelemetry] = field(default_factory=list)

    @classmethod
    def unavailable(cls, reason: str) -> HostGpus:
        return cls(available=False, reason=reason)


def _text(value: Any) -> str:
    # nvidia-ml-py before 11.5 returned bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlReader:
    """Reads NVML; initialises it on the first read and keeps it open until close().

    `module` replaces `import pynvml` (tests pass a fake).
    """

    def __init__(self, module: ModuleType | None = None) -> None:
        self._module = module
        self._nvml: ModuleType | None = None
        self._lock = threading.Lock()  # NVML is thread-safe; this keeps init/shutdown from racing reads
        self._warned: str | None = None

    def read(self) -> HostGpus:
        with self._lock:
            nvml = self._open()
            if isinstance(nvml, str):
                if nvml != self._warned:  # once per distinct reason, not on every heartbeat
                    log.warning("no GPU telemetry: %s", nvml)
                    self._warned = nvml
                return HostGpus.unavailable(nvml)
            return self._read(nvml)

    async def read_async(self) -> HostGpus:
        return await asyncio.to_thread(self.read)

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                self._call(self._nvml, "nvmlShutdown")
                self._nvml = None

    # -- internals -------------------------------------------------------------------------------

    def _open(self) -> ModuleType | str:
        """The initialised module, or why there is none."""
        if self._nvml is not None:
            return self._nvml
        module = self._module
        if module is None:
            try:
                module = importlib.import_module("pynvml")
            except ImportError:
                return "nvidia-ml-py is not installed (it comes with: pip install 'tokenmill[host]')"
        try:
            module.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
            return f"NVML did not start ({type(exc).__name__}: {exc}); is the NVIDIA driver installed?"
        self._nvml = module
        return module

    def _call(self, nvml: ModuleType, name: str, *args: Any) -> Any:
        """nvml.<name>(*args), or None when this driver or library cannot say."""
        fn: Callable[..., Any] | None = getattr(nvml, name, None)
        if fn is None:  # an older nvidia-ml-py without this function
            return None
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            log.debug("NVML %s: %s", name, exc)
            return None

    def _read(self, nvml: ModuleType) -> HostGpus:
        driver = self._call(nvml, "nvmlSystemGetDriverVersion")
        cuda = self._call(nvml, "nvmlSystemGetCudaDriverVersion")  # e.g. 12040 for 12.4
        count = self._call(nvml, "nvmlDeviceGetCount")
        gpus = [self._gpu(nvml, i) for i in range(count or 0)]
        return HostGpus(
            available=True,
            reason=None if count is not None else "NVML could not count the GPUs",
            driver_version=_text(driver) if driver is not None else None,
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
            gpus=gpus,
        )

    def _gpu(self, nvml: ModuleType, index: int) -> GpuTelemetry:
        handle = self._call(nvml, "nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            return GpuTelemetry(index=index, name="unreadable")

        def get(name: str, *args: Any) -> Any:
            return self._call(nvml, name, handle, *args)

        name = get("nvmlDeviceGetName")
        uuid = get("nvmlDeviceGetUUID")
        memory = get("nvmlDeviceGetMemoryInfo")
        utilization = get("nvmlDeviceGetUtilizationRates")
        temperature = get("nvmlDeviceGetTemperature", getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        power = get("nvmlDeviceGetPowerUsage")  # milliwatts
        limit = get("nvmlDeviceGetEnforcedPowerLimit")  # milliwatts
        cc = get("nvmlDeviceGetCudaComputeCapability")  # (major, minor)
        procs = get("nvmlDeviceGetComputeRunningProcesses") or []
        return GpuTelemetry(
            index=index,
            name=_text(name) if name is not None else "unknown",
            uuid=_text(uuid) if uuid is not None else None,
            memory_total_mib=_attr_int(memory, "total", _MIB),
            memory_used_mib=_attr_int(memory, "used", _MIB),
            utilization_pct=_attr_int(utilization, "gpu"),
            temperature_c=int(temperature) if temperature is not None else None,
            power_draw_w=power / 1000 if power is not None else None,
            power_limit_w=limit / 1000 if limit is not None else None,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
            processes=[GpuProcess(pid=int(p.pid), used_memory_mib=_attr_int(p, "usedGpuMemory", _MIB))
                       for p in procs],
        )


def _attr_int(obj: Any, name: str, divisor: int = 1) -> int | None:
    """obj.name // divisor, or None when obj is missing or the driver left the value empty."""
    value = getattr(obj, name, None) if obj is not None else None
    return int(value) // divisor if isinstance(value, int) else None
