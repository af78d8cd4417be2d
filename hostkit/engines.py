"""The inference engines the agent can run, behind one small interface.

"sim" runs the simulated engine in the agent's own event loop (one server for every model).
"vllm" runs one supervised `vllm serve` process per model, each on its own port
(hostkit/vllm_process.py); vllm is never imported, only executed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from hostkit.config import AgentConfig
from hostkit.engine_spec import EngineSpec
from hostkit.engine_tls import EngineCert, EngineTlsError, ensure_engine_cert
from hostkit.sim.engine import SimEngine, start_sim_engine
from hostkit.vllm_process import EngineEvents, SupervisedVllm


class EngineUnavailable(RuntimeError):
    """The configured engine cannot start here; the message says why and what to do."""


@dataclass(frozen=True)
class EngineEndpoint:
    model: str
    local_url: str  # where the agent reads /health and /metrics (no /v1)
    public_url: str  # what the router is told (ServedModel.endpoint)
    # Requests the engine runs at once at most (EngineMetrics.max_num_seqs); None: not configured
    # here (vLLM then uses its own default, which it does not publish).
    max_num_seqs: int | None = None


class Engine(Protocol):
    kind: str  # ServedModel.engine: "sim" or "vllm"
    # The bearer key every engine of this host requires (all but /health); fixed for the
    # engine's lifetime, so relaunches keep it and the router's copy stays good. Never logged.
    key: str
    # The engines' TLS certificate once started (None: plain HTTP, over loopback only).
    tls: EngineCert | None

    async def start(self) -> list[EngineEndpoint]: ...

    async def stop(self) -> None: ...

    async def suspend(self) -> bool:
        """The host is drained: give the GPUs back if configured to; True if the engine stopped
        (its endpoints stay what they were, for resume())."""

    async def resume(self) -> None:
        """Serve again after suspend()."""

    async def set_models(self, config: AgentConfig, *, start: bool = True) -> list[EngineEndpoint]:
        """Serve config.models from now on (`tokenmill-host serve-models`): engines of models no longer
        wanted stop, new ones start (unless `start` is false: the host is drained and its engines
        suspended, so resume() starts them), the others keep serving undisturbed. Every endpoint now."""

    def instance(self, model: str) -> int:
        """Changes whenever the model's engine is launched again, so its check must run again."""

    def describe(self) -> dict[str, str]:
        """Per model, the engine's state in a few words (for `tokenmill-host status`)."""

    def recent_events(self) -> list[str]:
        """Launches, exits and relaunches, newest last."""


def start_tls(config: AgentConfig) -> EngineCert | None:
    if not config.uses_tls:
        return None
    try:
        return ensure_engine_cert(config.tls_dir)
    except EngineTlsError as exc:
        raise EngineUnavailable(str(exc)) from None


def client_verify(tls: EngineCert | None) -> ssl.SSLContext | bool:
    """What the agent's own calls to its engines verify: exactly their certificate."""
    return tls.client_context() if tls is not None else True


class SimEngineRunner:
    """The simulated engine, started in-process with the config's timing."""

    kind = "sim"

    def __init__(self, config: AgentConfig, key: str | None = None) -> None:
        self._config = config
        self.key = key or config.new_engine_key()
        self.tls: EngineCert | None = None
        self.sim: SimEngine | None = None  # exposed so tests can inject faults

    async def start(self) -> list[EngineEndpoint]:
        c = self._config
        self.tls = start_tls(c)
        self.sim = await start_sim_engine(c.models, host=c.engine_host, port=c.engine_port, timing=c.sim,
                                          seed=c.sim_seed, api_key=self.key,
                                          ssl_context=self.tls.server_context() if self.tls else None)
        return self._endpoints()

    def _endpoints(self) -> list[EngineEndpoint]:
        c, sim = self._config, self.sim
        assert sim is not None
        local = f"{c.engine_scheme}://{url_host(c.local_engine_host)}:{sim.port}"
        public = f"{c.engine_scheme}://{url_host(c.public_engine_host)}:{c.public_engine_port(sim.port)}"
        return [EngineEndpoint(m, local, public, c.sim.max_concurrency) for m in sim.models]

    async def stop(self) -> None:
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None

    async def suspend(self) -> bool:
        """Nothing to give back: the simulated engine holds no GPU, and keeps serving."""
        return False

    async def resume(self) -> None:
        """Nothing was suspended."""

    async def set_models(self, config: AgentConfig, *, start: bool = True) -> list[EngineEndpoint]:
        """One server serves every model: it takes the new set in place, so requests of kept models
        in flight are not cut."""
        assert self.sim is not None, "start() first"
        self._config = config
        self.sim.set_models(config.models)
        return self._endpoints()

    def instance(self, model: str) -> int:
        return 1  # it never restarts

    def describe(self) -> dict[str, str]:
        return {m: "simulated" for m in self._config.models}

    def recent_events(self) -> list[str]:
        return []


class VllmEngine:
    """One supervised vLLM server per [[vllm.engines]] spec, from engine_port upwards."""

    kind = "vllm"

    def __init__(self, config: AgentConfig, key: str | None = None) -> None:
        self._config = config
        self.key = key or config.new_engine_key()
        self.tls: EngineCert | None = None
        self.events = EngineEvents()
        self.processes: dict[str, SupervisedVllm] = {}  # by model

    async def start(self) -> list[EngineEndpoint]:
        c = self._config
        executable = c.vllm.executable
        if shutil.which(executable) is None:
            raise EngineUnavailable(f"the vllm executable {executable!r} is not found or not executable: install "
                                    "vLLM (pip install 'tokenmill[host]') or set executable in the [vllm] table")
        try:
            c.vllm.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineUnavailable(f"cannot create the vLLM log directory {c.vllm.log_dir}: {exc}; set log_dir in "
                                    "the [vllm] table") from None
        self.tls = start_tls(c)
        for position, spec in enumerate(c.vllm.engines):
            self._add(spec, self._port(spec.port, position))
        for proc in self.processes.values():
            proc.start()
        return self._endpoints()

    def _add(self, spec: EngineSpec, port: int) -> SupervisedVllm:
        c = self._config
        local = f"{c.engine_scheme}://{url_host(c.local_engine_host)}:{port}"
        proc = SupervisedVllm(spec, port, c.engine_host, local, c.vllm, self.events, self.key, self.tls)
        self.processes[spec.model] = proc
        return proc

    def _endpoints(self) -> list[EngineEndpoint]:
        c = self._config
        return [EngineEndpoint(m, p.local_url,
                               f"{c.engine_scheme}://{url_host(c.public_engine_host)}:{c.public_engine_port(p.port)}",
                               max_num_seqs(p.spec.extra_args))
                for m, p in self.processes.items()]

    def _port(self, port: int | None, position: int, taken: frozenset[int] = frozenset()) -> int:
        if port is None and self._config.engine_port:
            port = self._config.engine_port + position
            while port in taken:  # a kept engine holds it: the next one up
                port += 1
        # Chosen once, so the router's endpoint stays the same across relaunches.
        return port or _free_port(self._config.local_engine_host)

    async def set_models(self, config: AgentConfig, *, start: bool = True) -> list[EngineEndpoint]:
        wanted = {spec.model: spec for spec in config.vllm.engines}
        self._config = config
        changed = [m for m, p in self.processes.items() if wanted.get(m) != p.spec]
        for model in changed:
            self.events.add(model, "no longer served: stopping" if model not in wanted else "new spec: relaunching")
        # The GPUs' memory is freed before a new engine asks for it.
        await asyncio.gather(*(self.processes.pop(m).aclose() for m in changed))
        for position, spec in enumerate(config.vllm.engines):
            if spec.model not in self.processes:
                taken = frozenset(p.port for p in self.processes.values())
                proc = self._add(spec, self._port(spec.port, position, taken))
                self.events.add(spec.model, f"now served (port {proc.port})")
                if start:
                    proc.start()
        order = [spec.model for spec in config.vllm.engines]
        self.processes = {m: self.processes[m] for m in order}
        return self._endpoints()

    async def stop(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.processes.values()))

    async def suspend(self) -> bool:
        if not self._config.vllm.stop_when_drained:
            return False
        for model in self.processes:
            self.events.add(model, "host drained: stopping to free the GPUs")
        await asyncio.gather(*(p.stop() for p in self.processes.values()))
        return True

    async def resume(self) -> None:
        for proc in self.processes.values():
            proc.start()

    def instance(self, model: str) -> int:
        proc = self.processes.get(model)
        return proc.launches if proc is not None else 0

    def describe(self) -> dict[str, str]:
        return {m: p.describe() for m, p in self.processes.items()}

    def recent_events(self) -> list[str]:
        return self.events.recent()


def max_num_seqs(extra_args: list[str]) -> int | None:
    """vLLM's --max-num-seqs when the engine's extra_args set it (`--max-num-seqs N` or `=N`), else None."""
    value = None
    for i, arg in enumerate(extra_args):
        if arg == "--max-num-seqs" and i + 1 < len(extra_args):
            value = extra_args[i + 1]
        elif arg.startswith("--max-num-seqs="):
            value = arg.split("=", 1)[1]
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 1 else None


def make_engine(config: AgentConfig) -> Engine:
    return SimEngineRunner(config) if config.engine == "sim" else VllmEngine(config)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
