"""A small stand-in for nvidia-ml-py's `pynvml` module: the functions hostkit/nvml.py calls, over
a list of described GPUs. A field named in `unsupported` raises NVMLError_NotSupported, as a
driver does for what a card cannot report; `init_error` makes nvmlInit fail like a host without
a loaded driver.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 4090"
    uuid: str = "GPU-0000"
    total_mib: int = 24564
    used_mib: int = 1024
    utilization: int = 37
    temperature: int = 61
    power_mw: int = 215_000
    limit_mw: int = 450_000
    cc: tuple[int, int] = (8, 9)
    processes: list[tuple[int, int | None]] = field(default_factory=lambda: [(4242, 20_000)])  # (pid, MiB)
    unsupported: set[str] = field(default_factory=set)  # nvml function names that raise NotSupported


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # pynvml's own names
    def __str__(self) -> str:
        return "Not Supported"


class NVMLError_DriverNotLoaded(NVMLError):
    def __str__(self) -> str:
        return "Driver Not Loaded"


def fake_pynvml(gpus: list[FakeGpu], *, driver: str = "550.54.15", cuda: int = 12040,
                init_error: type[NVMLError] | None = None, unsupported: set[str] = frozenset()) -> Any:
    """A module object with pynvml's names; `calls` counts every call by name."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_TEMPERATURE_GPU = 0
    m.calls = {}
    m.initialised = False

    def api(name: str, fn: Any) -> None:
        def call(*args: Any) -> Any:
            m.calls[name] = m.calls.get(name, 0) + 1
            if name in unsupported:
                raise NVMLError_NotSupported()
            if args and isinstance(args[0], FakeGpu) and name in args[0].unsupported:
                raise NVMLError_NotSupported()
            return fn(*args)
        setattr(m, name, call)

    def init() -> None:
        if init_error is not None:
            raise init_error()
        m.initialised = True

    def shutdown() -> None:
        m.initialised = False

    api("nvmlInit", init)
    api("nvmlShutdown", shutdown)
    api("nvmlSystemGetDriverVersion", lambda: driver)
    api("nvmlSystemGetCudaDriverVersion", lambda: cuda)
    api("nvmlDeviceGetCount", lambda: len(gpus))
    api("nvmlDeviceGetHandleByIndex", lambda i: gpus[i])
    api("nvmlDeviceGetName", lambda g: g.name)
    api("nvmlDeviceGetUUID", lambda g: g.uuid)
    api("nvmlDeviceGetMemoryInfo", lambda g: types.SimpleNamespace(total=g.total_mib * MIB, used=g.used_mib * MIB,
                                                                   free=(g.total_mib - g.used_mib) * MIB))
    api("nvmlDeviceGetUtilizationRates", lambda g: types.SimpleNamespace(gpu=g.utilization, memory=10))
    api("nvmlDeviceGetTemperature", lambda g, _sensor: g.temperature)
    api("nvmlDeviceGetPowerUsage", lambda g: g.power_mw)
    api("nvmlDeviceGetEnforcedPowerLimit", lambda g: g.limit_mw)
    api("nvmlDeviceGetCudaComputeCapability", lambda g: g.cc)
    api("nvmlDeviceGetComputeRunningProcesses", lambda g: [
        types.SimpleNamespace(pid=pid, usedGpuMemory=None if mib is None else mib * MIB) for pid, mib in g.processes])
    return m
