"""NVML telemetry against a fake pynvml: every field, fields a card cannot report, no GPU, no
driver, no library; and reads happen off the event loop."""

from __future__ import annotations

import sys
import threading

import pytest

from hostkit.nvml import NvmlReader
from hostkit.protocol import GpuProcess
from tests.hostkit.fake_nvml import FakeGpu, NVMLError_DriverNotLoaded, fake_pynvml


def test_reads_every_field_of_every_gpu() -> None:
    nvml = fake_pynvml([FakeGpu(), FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-0001", total_mib=81559,
                                           cc=(9, 0), processes=[])])
    host = NvmlReader(nvml).read()
    assert host.available and host.reason is None
    assert (host.driver_version, host.cuda_version) == ("550.54.15", "12.4")
    first, second = host.gpus
    assert (first.index, first.name, first.uuid) == (0, "NVIDIA GeForce RTX 4090", "GPU-0000")
    assert (first.memory_total_mib, first.memory_used_mib) == (24564, 1024)
    assert (first.utilization_pct, first.temperature_c) == (37, 61)
    assert (first.power_draw_w, first.power_limit_w) == (215.0, 450.0)
    assert first.compute_capability == "8.9"
    assert first.processes == [GpuProcess(pid=4242, used_memory_mib=20_000)]
    assert (second.index, second.compute_capability, second.processes) == (1, "9.0", [])


def test_a_field_the_card_cannot_report_is_none_and_the_rest_is_read() -> None:
    gpu = FakeGpu(unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit"},
                  processes=[(77, None)])  # the driver hides per-process memory (containers)
    host = NvmlReader(fake_pynvml([gpu], unsupported={"nvmlSystemGetCudaDriverVersion"})).read()
    (g,) = host.gpus
    assert g.power_draw_w is None and g.power_limit_w is None
    assert g.temperature_c == 61 and g.memory_total_mib == 24564  # the others still read
    assert g.processes == [GpuProcess(pid=77, used_memory_mib=None)]
    assert host.available and host.cuda_version is None and host.driver_version == "550.54.15"


def test_every_per_gpu_field_unsupported_still_reports_the_gpu() -> None:
    names = {"nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
             "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
             "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetComputeRunningProcesses"}
    (g,) = NvmlReader(fake_pynvml([FakeGpu(unsupported=names)])).read().gpus
    assert g.index == 0 and g.name == "unknown" and g.processes == []
    assert [g.uuid, g.memory_total_mib, g.memory_used_mib, g.utilization_pct, g.temperature_c, g.power_draw_w,
            g.power_limit_w, g.compute_capability] == [None] * 8


def test_an_older_library_without_a_function_reads_as_none() -> None:
    nvml = fake_pynvml([FakeGpu()])
    del nvml.nvmlDeviceGetCudaComputeCapability
    (g,) = NvmlReader(nvml).read().gpus
    assert g.compute_capability is None and g.name == "NVIDIA GeForce RTX 4090"


def test_no_gpu_on_a_working_driver() -> None:
    host = NvmlReader(fake_pynvml([])).read()
    assert host.available and host.gpus == [] and host.driver_version == "550.54.15"


def test_no_driver_is_reported_not_raised_and_init_is_retried() -> None:
    nvml = fake_pynvml([FakeGpu()], init_error=NVMLError_DriverNotLoaded)
    reader = NvmlReader(nvml)
    host = reader.read()
    assert not host.available and host.gpus == []
    assert "Driver Not Loaded" in (host.reason or "") and "NVIDIA driver" in (host.reason or "")
    reader.read()
    assert nvml.calls["nvmlInit"] == 2  # a driver loaded later is picked up


def test_library_absent_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now raises ImportError
    host = NvmlReader().read()
    assert not host.available and "nvidia-ml-py is not installed" in (host.reason or "")


def test_the_real_import_path_takes_pynvml_from_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([FakeGpu()]))
    assert NvmlReader().read().gpus[0].name == "NVIDIA GeForce RTX 4090"


def test_init_once_and_shutdown_on_close() -> None:
    nvml = fake_pynvml([FakeGpu()])
    reader = NvmlReader(nvml)
    reader.read()
    reader.read()
    assert nvml.calls["nvmlInit"] == 1 and nvml.initialised
    reader.close()
    assert not nvml.initialised and nvml.calls["nvmlShutdown"] == 1


async def test_async_reads_run_in_a_worker_thread() -> None:
    nvml = fake_pynvml([FakeGpu()])
    threads: list[threading.Thread] = []
    inner = nvml.nvmlDeviceGetCount

    def count() -> int:
        threads.append(threading.current_thread())
        return inner()

    nvml.nvmlDeviceGetCount = count
    host = await NvmlReader(nvml).read_async()
    assert host.gpus and threads and threads[0] is not threading.main_thread()
