"""Fixed data behind the same methods as console.client.AdminClient, for snapshot tests only
(the real client against a real router is covered by test_pilot.py)."""

from __future__ import annotations

from backend.api.admin_wire import ClientOut, EventOut, HostOut, KeyOut, ModelOut, ReplicaOut, UsageOut
from hostkit.protocol import GpuTelemetry

NOW_US = 1_764_000_000_000_000  # 2025-11-24 16:00:00 UTC, frozen
NANO = 10**9


def _replica(host: str, status: str = "active", ready: bool = True) -> ReplicaOut:
    return ReplicaOut(host_id=host, host_name=host, host_status=status, url=f"http://{host}:8000", ready=ready,
                      outstanding=0, ejected=False)


class FakeAdmin:
    base_url = "http://127.0.0.1:8600"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def aclose(self) -> None:
        pass

    async def clients(self) -> list[ClientOut]:
        return [
            ClientOut("cl_acme", "acme", NOW_US - 86_400_000_000, 12_345_678_900, 12_000_000_000, "12.3456789", 2, 1),
            ClientOut("cl_openrouter", "openrouter", NOW_US - 3 * 86_400_000_000, 250 * NANO, 250 * NANO, "250", 1, 1),
        ]

    async def keys(self, client_id: str) -> list[KeyOut]:
        return [KeyOut("key_1", client_id, "prod", "tm-ab12", NOW_US - 7_200_000_000, None),
                KeyOut("key_2", client_id, "old", "tm-cd34", NOW_US - 86_400_000_000, NOW_US - 3_600_000_000)]

    async def models(self) -> list[ModelOut]:
        return [
            ModelOut("llama-3.1-8b-instruct", "Llama 3.1 8B Instruct", True, 131072, 60_000_000, 90_000_000,
                     "0.06", "0.09", [_replica("rig-a"), _replica("rig-b", "draining")]),
            ModelOut("qwen2.5-0.5b-instruct", "Qwen2.5 0.5B Instruct", False, 32768, 15_000_000, 25_000_000,
                     "0.015", "0.025", []),
        ]

    async def hosts(self) -> list[HostOut]:
        gpus = [GpuTelemetry(0, "H100", 81559, 40000, 62, 55, 350.0, 700.0),
                GpuTelemetry(1, "H100", 81559, 60000, 88, 61, 500.0, 700.0)]
        return [
            HostOut("h_a", "rig-a", "runpod", "active", ["llama-3.1-8b-instruct"], 3, 3, "H100", gpus,
                    2_490_000_000, 0, 0.4, "0.1.0"),
            HostOut("h_b", "rig-b", "local", "draining", ["llama-3.1-8b-instruct"], 1, 1, None, [], 0, 7000, 1.2,
                    "0.1.0"),
        ]

    async def usage(self, group_by: str, since_us: int | None = None, until_us: int | None = None) -> list[UsageOut]:
        hour = since_us is not None and until_us is not None and until_us - since_us <= 3_600_000_000
        k = 1 if hour else 8
        return [UsageOut("llama-3.1-8b-instruct", 1200 * k, 6 * k, 300_000 * k, 150_000 * k, 31_500_000 * k,
                         9_000_000 * k)]

    async def events(self, after: int = 0) -> list[EventOut]:
        events = [
            EventOut(1, NOW_US - 120_000_000, "host", "rig-a", "host rig-a registered (llama-3.1-8b-instruct)", "info"),
            EventOut(2, NOW_US - 60_000_000, "host", "rig-b", "host rig-b draining", "warning"),
            EventOut(3, NOW_US - 5_000_000, "model", "qwen2.5-0.5b-instruct", "model disabled", "info"),
        ]
        return [e for e in events if e.seq > after]

    async def set_model_enabled(self, model_id: str, enabled: bool):
        self.calls.append(("model", model_id, enabled))

    async def host_action(self, host_id: str, action: str):
        self.calls.append(("host", host_id, action))
