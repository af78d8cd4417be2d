"""The inference engines the agent can run, behind one small interface.

"sim" runs the simulated engine in the agent's own event loop (one server for every model).
"vllm" is the real engine; launching it arrives with the real-hosts work, and until then it says
so clearly instead of pretending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hostkit.config import AgentConfig
from hostkit.sim_engine import SimEngine, start_sim_engine


class EngineUnavailable(RuntimeError):
    """The configured engine cannot start here; the message says why and what to do."""


@dataclass(frozen=True)
class EngineEndpoint:
    model: str
    local_url: str  # where the agent reads /health and /metrics (no /v1)
    public_url: str  # what the router is told (ServedModel.endpoint)


class Engine(Protocol):
    kind: str  # ServedModel.engine: "sim" or "vllm"

    async def start(self) -> list[EngineEndpoint]: ...

    async def stop(self) -> None: ...


class SimEngineRunner:
    """The simulated engine, started in-process with the config's timing."""

    kind = "sim"

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self.sim: SimEngine | None = None  # exposed so tests can inject faults

    async def start(self) -> list[EngineEndpoint]:
        c = self._config
        self.sim = await start_sim_engine(c.models, host=c.engine_host, port=c.engine_port, timing=c.sim,
                                          seed=c.sim_seed)
        local = f"http://{_url_host(c.local_engine_host)}:{self.sim.port}"
        public = f"http://{_url_host(c.public_engine_host)}:{self.sim.port}"
        return [EngineEndpoint(m, local, public) for m in self.sim.models]

    async def stop(self) -> None:
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None


class VllmEngine:
    """vLLM, one OpenAI-compatible server per model from engine_port upwards (not built yet)."""

    kind = "vllm"

    def __init__(self, config: AgentConfig) -> None:
        self._config = config

    async def start(self) -> list[EngineEndpoint]:
        raise EngineUnavailable(
            'vLLM engine support arrives with the real-hosts issue; set engine = "sim" in the agent config '
            "to run the simulated engine until then"
        )

    async def stop(self) -> None:
        """Nothing to stop: start() never launches a process yet."""


def make_engine(config: AgentConfig) -> Engine:
    return SimEngineRunner(config) if config.engine == "sim" else VllmEngine(config)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
