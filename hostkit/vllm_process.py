"""One `vllm serve` process for one model, supervised: launched, watched, relaunched, stopped.

- Launched in its own session and process group (a Ctrl-C on the agent's terminal reaches only
  the agent, which then stops vLLM in order; a stop reaches vLLM's worker processes too), with
  its output appended to <log_dir>/vllm-<model>.log under a header line per launch.
- Healthy once GET /health answers 200; a launch gets health_timeout_s for that (a first launch
  downloads the weights).
- A process that exits, or that fails /health for unhealthy_restart_s once healthy (hung), is
  stopped and launched again after a back-off doubling from restart_initial_s to restart_max_s;
  the back-off starts over once a launch has stayed healthy for STABLE_AFTER_S.
- Stopped with SIGTERM to its process group, then SIGKILL after stop_grace_s.
- Locked with the host's engine key: in VLLM_API_KEY (vLLM's own check, /v1 only) and enforced on
  every other route too by hostkit/vllm_plugins/tokenmill_engine_guard.py (`--middleware`; see
  there why vLLM's check alone leaves /invocations open). Never on the command line, which `ps`
  and vLLM's own startup log show, nor in the log header or the events.
Every launch, exit and relaunch goes to the agent's log and to the shared EngineEvents, which
`tokenmill-host status` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shlex
import signal
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO, Literal

import httpx

from hostkit.config import VllmSettings
from hostkit.engine_spec import EngineSpec, vllm_command
from hostkit.engine_tls import EngineCert

log = logging.getLogger(__name__)

STABLE_AFTER_S = 600.0
STARTING_POLL_S = 1.0  # /health while a launch loads
RUNNING_POLL_S = 5.0  # /health once healthy; an exit is noticed at once, not by polling
MAX_EVENTS = 50
# vLLM imports the guard from this directory, put first on its PYTHONPATH: the directory holds that one
# standard-library module, so it loads whatever Python vLLM runs in and shadows no package of vLLM's.
GUARD_DIR = Path(__file__).resolve().with_name("vllm_plugins")
GUARD_MIDDLEWARE = "tokenmill_engine_guard.EngineKeyGuard"
# vLLM takes its key from --api-key or from this variable (vllm/envs.py "VLLM_API_KEY"; api_server.py builds its
# AuthenticationMiddleware from `args.api_key or [envs.VLLM_API_KEY]`, older versions the other way round) and
# then wants `Authorization: Bearer <key>` on /v1. The guard reads the same variable.
KEY_ENV = "VLLM_API_KEY"

ProcessState = Literal["starting", "healthy", "unhealthy", "waiting", "stopped"]


class EngineEvents:
    """The recent launches, exits and relaunches of every model's engine, newest last."""

    def __init__(self) -> None:
        self._events: deque[str] = deque(maxlen=MAX_EVENTS)

    def add(self, model: str, text: str, level: int = logging.INFO) -> None:
        log.log(level, "vLLM %s: %s", model, text)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._events.append(f"{stamp} {model}: {text}")

    def recent(self) -> list[str]:
        return list(self._events)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class SupervisedVllm:
    def __init__(self, spec: EngineSpec, port: int, listen_host: str, local_url: str, settings: VllmSettings,
                 events: EngineEvents, key: str, tls: EngineCert | None = None) -> None:
        self.spec = spec
        self.port = port
        self.local_url = local_url
        self.argv = vllm_command(spec, executable=settings.executable, host=listen_host, port=port,
                                 middleware=[GUARD_MIDDLEWARE],
                                 tls=(str(tls.cert_path), str(tls.key_path)) if tls is not None else None)
        self._key = key
        self.log_path = settings.log_dir / f"vllm-{spec.model}.log"
        self.state: ProcessState = "stopped"
        self.launches = 0  # also the instance number: each launch must be checked again
        self.last_exit: str | None = None
        self._settings = settings
        self._events = events
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        # Never through a host's HTTP_PROXY; over TLS, trusting exactly the engines' certificate.
        self._http = httpx.AsyncClient(timeout=5.0, trust_env=False,
                                       verify=tls.client_context() if tls is not None else True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def describe(self) -> str:
        parts = [self.state, f"port {self.port}"]
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        if self.launches > 1:
            parts.append(f"{self.launches - 1} restart(s)")
        if self.last_exit and self.state != "healthy":
            parts.append(f"last: {self.last_exit}")
        return ", ".join(parts) + f"; log {self.log_path}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervise(), name=f"vllm {self.spec.model}")

    async def stop(self) -> None:
        """Stop supervising, then stop the process (SIGTERM, SIGKILL after the grace period)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._terminate()
        self.state = "stopped"

    async def aclose(self) -> None:
        await self.stop()
        await self._http.aclose()

    # -- supervision -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self._settings.restart_initial_s
        while True:
            launched = time.monotonic()
            healthy_since = await self._run_once()
            await self._terminate()
            if healthy_since is not None and time.monotonic() - healthy_since >= STABLE_AFTER_S:
                delay = self._settings.restart_initial_s
            self.state = "waiting"
            self._events.add(self.spec.model, f"{self.last_exit} after {time.monotonic() - launched:.0f} s; "
                                              f"relaunching in {delay:g} s (log: {self.log_path})", logging.WARNING)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.restart_max_s)

    async def _run_once(self) -> float | None:
        """Launch, wait for health, watch; return when the launch is over (monotonic time it became
        healthy, or None). self.last_exit says why it ended."""
        try:
            await self._launch()
        except OSError as exc:
            self.last_exit = f"could not launch {self.argv[0]!r}: {exc}"
            return None
        assert self._proc is not None
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            became_healthy = await self._wait_healthy(exited)
            if became_healthy is None:
                return None
            await self._watch(exited)
            return became_healthy
        finally:
            exited.cancel()

    async def _launch(self) -> None:
        self.launches += 1
        self.state = "starting"
        env = dict(os.environ)
        if self.spec.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in self.spec.devices)
        if self._settings.hf_cache_dir is not None:
            env["HF_HUB_CACHE"] = str(self._settings.hf_cache_dir)
        env[KEY_ENV] = self._key
        env["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *filter(None, [env.get("PYTHONPATH")])])
        out = await asyncio.to_thread(self._open_log)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env=env, start_new_session=True)
        finally:
            out.close()  # the child has its own copy
        self._events.add(self.spec.model, f"launched (pid {self._proc.pid}, port {self.port}, "
                                          f"launch {self.launches})")

    def _open_log(self) -> BinaryIO:
        """The model's log, opened for appending, with a header line naming this launch."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Handed to the child; _launch closes it. 0600: an engine's log can quote prompts.
        out = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out.write(f"\n=== {stamp} tokenmill-host launch {self.launches}: {shlex.join(self.argv)}\n".encode())
        out.flush()
        return out

    async def _wait_healthy(self, exited: asyncio.Future[int]) -> float | None:
        started = time.monotonic()
        deadline = started + self._settings.health_timeout_s
        while True:
            if exited.done():
                self.last_exit = f"{_exit_text(exited.result())} while starting"
                return None
            if await self._healthy():
                now = time.monotonic()
                self.state = "healthy"
                self._events.add(self.spec.model, f"healthy after {now - started:.0f} s")
                return now
            if time.monotonic() >= deadline:
                self.last_exit = f"not healthy within {self._settings.health_timeout_s:g} s"
                return None
            await asyncio.wait({exited}, timeout=STARTING_POLL_S)

    async def _watch(self, exited: asyncio.Future[int]) -> None:
        failing_since: float | None = None
        while True:
            await asyncio.wait({exited}, timeout=RUNNING_POLL_S)
            if exited.done():
                self.last_exit = _exit_text(exited.result())
                return
            if await self._healthy():
                if failing_since is not None:
                    self._events.add(self.spec.model, "healthy again")
                failing_since = None
                self.state = "healthy"
                continue
            if failing_since is None:
                failing_since = time.monotonic()
                self.state = "unhealthy"
                self._events.add(self.spec.model, "failing /health", logging.WARNING)
            elif time.monotonic() - failing_since >= self._settings.unhealthy_restart_s:
                self.last_exit = f"failed /health for {self._settings.unhealthy_restart_s:g} s"
                return

    async def _healthy(self) -> bool:
        try:
            return (await self._http.get(f"{self.local_url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            self._proc = None
            return
        # self._proc stays set until the process is gone: a stop() that cancels the supervisor in
        # the middle of this still finds the process to stop.
        self._signal(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._settings.stop_grace_s)
        except TimeoutError:
            self._events.add(self.spec.model, f"ignored SIGTERM for {self._settings.stop_grace_s:g} s; "
                                              "sending SIGKILL", logging.WARNING)
            self._signal(proc, signal.SIGKILL)
            await proc.wait()
        self._proc = None
        self._events.add(self.spec.model, f"stopped (pid {proc.pid}, {_exit_text(proc.returncode)})")

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        # The whole group: vLLM's tensor-parallel workers are its children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
