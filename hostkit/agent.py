"""The host agent: runs the engine, keeps the router informed, drains and leaves cleanly.

One background loop talks to the router: register (until it succeeds), then a heartbeat every
interval with the engine's models, metrics and in-flight count. Network failures never end it;
it backs off (jittered, capped) and tries again. The router's heartbeat reply can ask for a
drain, which the agent then does by itself, or end one (the operator resumed the host), even one
this host asked for. Heartbeats say who asked for a drain, so that the router mirrors only the
host's own. A newer agent registering with the same host token shuts this one out (409
agent_replaced): it stops calling the router rather than fight it for the host.

Drained means nothing can still be owed to a client: the engine has nothing running or waiting,
and either the router said (in reply to a heartbeat sent while draining) that it has nothing
outstanding here, or the router has been unreachable long enough to have taken this host out of
rotation (MISSED_HEARTBEATS_DOWN intervals), or this host never registered at all. Once drained,
a vLLM host stops its engines to give the GPUs back, and launches them again on resume.

Each model's hardware check (hostkit/agent_checks.py) runs once its engine is healthy, and its
result travels in every register and heartbeat: the router routes a model to this host only
while its check passed. The first registration waits (briefly) for the checks already running,
so a host that starts with healthy engines joins with its checks done. GPU telemetry comes from
NVML, read in a worker thread, for vLLM hosts only: a simulated host has no GPU of its own.

The engines take requests only with the host's engine key (config engine_key, else a random one
per start): the agent sends it to the router in every register and heartbeat, which is how the
router can forward to them, and uses it for its own requests (the decode-speed check). It is never
logged, and not in GET /status; `tokenmill-host check` reads it from GET /engine-key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from hostkit import __version__
from hostkit.agent_checks import ModelChecks
from hostkit.check import HostChecker
from hostkit.config import AgentConfig
from hostkit.control_api import AgentStatus, AgentStopping, start_control_api
from hostkit.engine_probe import EngineProbe, EngineReading
from hostkit.engine_spec import EngineSpec
from hostkit.engines import Engine, EngineEndpoint, EngineUnavailable, client_verify, make_engine
from hostkit.nvml import HostGpus, NvmlReader
from hostkit.protocol import AGENT_REPLACED, MISSED_HEARTBEATS_DOWN, GpuTelemetry, Heartbeat, HeartbeatReply, Register
from hostkit.router_client import RouterClient, RouterRejected, RouterUnreachable

log = logging.getLogger(__name__)

# The first registration waits this long at most for checks already running (a simulated engine's
# takes about two seconds; a vLLM engine is rarely healthy that early, so nothing is waited for).
FIRST_CHECKS_WAIT_S = 15.0

AgentState = Literal["starting", "registering", "active", "draining", "drained", "removed", "replaced", "stopping",
                     "stopped"]


class _Backoff:
    """Exponential back-off with +-20 % jitter, so many hosts do not retry in step."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial = initial_s
        self._max = max_s
        self._attempt = 0

    def next(self) -> float:
        delay = min(self._max, self._initial * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._attempt = 0


class Agent:
    """The agent for one host: `start()`, then `drain()`/`resume()` on order, `stop()` to leave."""

    def __init__(self, config: AgentConfig, engine: Engine | None = None, nvml: NvmlReader | None = None) -> None:
        self.config = config
        self.engine = engine or make_engine(config)
        self._nvml = nvml or NvmlReader()  # imports nothing until a vLLM host first reads it
        self._checker = HostChecker(config, self._nvml)
        self._checks: ModelChecks | None = None
        self._host_gpus: HostGpus | None = None
        self._engine_op: asyncio.Task[None] | None = None
        self._engine_released = False  # drained and the engine stopped to free the GPUs
        self.state: AgentState = "starting"
        self.host_id: str | None = None
        self.router_reachable = False
        self._outage_reported = False
        # Who this agent is to the router: of two live agents with one token, the newer one holds it.
        self._started_us = time.time_ns() // 1000
        self._router = RouterClient(config.router_url, config.host_token.get_secret_value(), config.router_timeout_s,
                                    instance=secrets.token_hex(8))
        self._probe: EngineProbe | None = None
        self._endpoints: dict[str, str] = {}
        self._local_endpoints: dict[str, str] = {}
        self._interval = config.heartbeat_interval_s
        self._draining = False
        self._drain_origin: Literal["local", "router"] | None = None
        self._drained = asyncio.Event()
        self._abort_drain = asyncio.Event()
        self._leaving = False  # stop() has begun (it drains first)
        self._stopping = False  # past the drain: no more drain/resume orders
        self._in_flight: int | None = None
        self._router_outstanding: int | None = None
        self._last_ok_mono: float | None = None  # monotonic time of the last successful heartbeat
        self._last_heartbeat_at: dt.datetime | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine, then the router loop. Raises EngineUnavailable or OSError (port busy)."""
        endpoints = await self.engine.start()
        self._endpoints = {e.model: e.public_url for e in endpoints}
        self._local_endpoints = {e.model: e.local_url for e in endpoints}
        self._probe = EngineProbe(endpoints, self.engine.kind, verify=client_verify(self.engine.tls),
                                  engine_key=self.engine.key)
        self._checks = ModelChecks(self._checker, self.engine, self._local_endpoints, self._wake.set,
                                   one_at_a_time=self.engine.kind == "vllm")
        self.state = "registering"
        self._loop_task = asyncio.create_task(self._router_loop(), name="tokenmill-host router loop")

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Drain (at most drain_timeout_s, default from config), deregister, stop the engine."""
        if self._leaving:
            return
        self._leaving = True
        replaced = self.state == "replaced"  # the host is another agent's now: nothing to tell the router
        timeout = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        if self._loop_task is not None and not replaced:
            if not await self.drain(timeout):
                log.warning("leaving before drained (timeout %.0f s or forced); in flight: %s", timeout,
                            self._in_flight)
        self._stopping = True
        self.state = "stopping"
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self.host_id is not None and not replaced:
            try:
                await self._router.deregister()
                log.info("deregistered host %s", self.host_id)
            except (RouterUnreachable, RouterRejected) as exc:
                log.warning("could not deregister (%s); the router will mark this host down", exc)
        if self._checks is not None:
            await self._checks.aclose()
        if self._engine_op is not None:
            await asyncio.gather(self._engine_op, return_exceptions=True)
        await self.engine.stop()
        if self._probe is not None:
            await self._probe.aclose()
        await self._router.aclose()
        await asyncio.to_thread(self._nvml.close)
        self.state = "stopped"

    def abort_drain(self) -> None:
        """End any wait for a drain now (a second Ctrl-C)."""
        self._abort_drain.set()

    # -- drain / resume ------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> bool:
        """Start draining (if not already) and wait up to timeout_s; True once drained."""
        if self._stopping:
            raise AgentStopping("the agent is stopping")
        if not self._draining:
            self._begin_drain("local")
            if self.host_id is not None:
                try:
                    reply = await self._router.drain()
                    self._router_outstanding = reply.outstanding
                except (RouterUnreachable, RouterRejected) as exc:
                    log.warning("drain request not delivered (%s); heartbeats carry draining=true", exc)
        else:
            self._drain_origin = "local"  # an operator on the host outranks a later resume from the router
        waits = [asyncio.ensure_future(self._drained.wait()), asyncio.ensure_future(self._abort_drain.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self._drained.is_set()

    async def resume(self) -> None:
        if self._leaving:  # a resume now would undo the drain that shutdown is waiting for
            raise AgentStopping("the agent is stopping")
        if self.host_id is not None:
            try:
                await self._router.resume()
            except (RouterUnreachable, RouterRejected) as exc:
                log.warning("resume not delivered (%s); heartbeats carry draining=false", exc)
        self._end_drain()
        log.info("resumed")
        self._wake.set()

    def _end_drain(self) -> None:
        self._draining = False
        self._drain_origin = None
        self._drained.clear()
        self._follow_engine(self._reclaim_engine)
        self.state = "active" if self.host_id is not None else "registering"

    def _begin_drain(self, origin: Literal["local", "router"]) -> None:
        log.info("draining (asked by %s)", "the router" if origin == "router" else "this host")
        self._draining = True
        self._drain_origin = origin
        self._drained.clear()
        self.state = "draining"
        self._wake.set()  # tell the router at once rather than at the next interval

    def _mark_drained(self) -> None:
        if not self._drained.is_set():
            log.info("drained")
            self.state = "drained"
            self._drained.set()
            if not self._leaving:  # stop() stops the engine itself
                self._follow_engine(self._release_engine)

    def _follow_engine(self, op: Callable[[], Awaitable[None]]) -> None:
        """Run an engine change after the previous one, so a quick drain-resume cannot overlap them."""
        previous = self._engine_op

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await op()
            except Exception:  # the agent keeps serving what it can; the engine's log says more
                log.exception("engine %s failed", op.__name__.strip("_").replace("_", " "))

        self._engine_op = asyncio.create_task(run(), name="tokenmill-host engine change")

    async def _release_engine(self) -> None:
        if self._drained.is_set():
            self._engine_released = await self.engine.suspend()

    async def _reclaim_engine(self) -> None:
        if self._engine_released:
            self._engine_released = False
            await self.engine.resume()

    def _router_gave_up_on_us(self) -> bool:
        """True when the router has certainly taken this host out of rotation by silence."""
        if self._last_ok_mono is None:
            return True
        return time.monotonic() - self._last_ok_mono >= MISSED_HEARTBEATS_DOWN * self._interval

    # -- the models served ----------------------------------------------------------------------

    async def serve_models(self, models: list[str], specs: Sequence[EngineSpec] = ()) -> None:
        """Serve `models` from now on (`tokenmill-host serve-models`): engines of models no longer
        wanted stop, the new ones start, and the next heartbeat, sent at once, tells the router, which
        routes by what heartbeats report. `specs`: how vLLM runs the new models on this host's GPUs
        (the router's market gives them); a model the config already runs keeps its spec unless one
        is given. Raises ValueError naming what is missing, AgentStopping once the agent stops.

        Lasts until the agent restarts: the config file stays the host operator's to edit (the agent
        may not be allowed to write it), and `tokenmill-host status` shows what is served now."""
        if self._leaving:
            raise AgentStopping("the agent is stopping")
        models = list(dict.fromkeys(m.strip() for m in models if m.strip()))
        if not models:
            raise ValueError("name at least one model to serve")
        update: dict[str, object] = {"models": models}
        if self.engine.kind == "vllm":
            known = {e.model: e for e in self.config.vllm.engines} | {e.model: e for e in specs}
            missing = [m for m in models if m not in known]
            if missing:
                raise ValueError(f"no vLLM engine spec for {', '.join(missing)}: the router's market gives one "
                                 "for each model this host's GPUs can run")
            update["vllm"] = self.config.vllm.model_copy(update={"engines": [known[m] for m in models]})
        config = self.config.model_copy(update=update)
        previous = self._engine_op

        async def change() -> None:
            if previous is not None:  # after a drain's or resume's engine change, never beside it
                await asyncio.gather(previous, return_exceptions=True)
            self._apply_endpoints(await self.engine.set_models(config, start=not self._engine_released))

        task = asyncio.create_task(change(), name="tokenmill-host serve models")
        self._engine_op = task
        await task
        self.config = config
        log.info("serving %s from now on", ", ".join(models))
        self._wake.set()  # tell the router now rather than at the next interval

    def _apply_endpoints(self, endpoints: list[EngineEndpoint]) -> None:
        self._endpoints = {e.model: e.public_url for e in endpoints}
        # In place: the checks hold this very dict.
        self._local_endpoints.clear()
        self._local_endpoints.update({e.model: e.local_url for e in endpoints})
        if self._probe is not None:
            self._probe.set_endpoints(endpoints)
        if self._checks is not None:
            self._checks.keep_only(set(self._endpoints))

    # -- router loop ---------------------------------------------------------------------------

    async def _router_loop(self) -> None:
        backoff = _Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        while self.state not in ("removed", "replaced"):
            try:
                if self.host_id is None and self._draining:
                    await self._drain_unregistered()
                elif self.host_id is None:
                    await self._register()
                else:
                    await self._heartbeat()
            except RouterUnreachable as exc:
                await self._on_unreachable(exc, backoff.next())
                continue
            except RouterRejected as exc:
                delay = backoff.next()
                if exc.code == AGENT_REPLACED:
                    # Another agent serves this host now: calling on would fight it for the host.
                    log.error("another agent registered with this host token; this one stops calling the router "
                              "(%s). Stop this agent, or restart it to take the host back.", exc)
                    self.state = "replaced"
                    break
                if exc.status == 404 and self.host_id is not None:
                    log.warning("the router no longer knows host %s (%s); registering again", self.host_id, exc)
                    self.host_id = None
                else:
                    log.error("the router refused this host: %s; retrying in %.1f s", exc, delay)
                await self._pause(delay)
                continue
            backoff.reset()
            await self._pause(self._interval)
        if self.state == "removed":
            log.error("the router removed this host; heartbeats stopped (restart the agent to join again)")

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next beat, or less when something (a drain, a resume) needs telling now."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up.
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _read_engine(self) -> EngineReading:
        assert self._probe is not None and self._checks is not None
        reading = await self._probe.read()
        # A released engine was stopped on purpose, after the drain: nothing can be running on it.
        self._in_flight = 0 if self._engine_released else reading.in_flight
        self._checks.observe(reading.models)
        return reading

    async def _gpus(self) -> list[GpuTelemetry]:
        """This beat's GPU telemetry: NVML for vLLM hosts (in a thread: NVML blocks), none for the sim."""
        if self.engine.kind != "vllm":
            return []
        self._host_gpus = await self._nvml.read_async()
        return self._host_gpus.gpus

    async def _register(self) -> None:
        assert self._checks is not None
        reading = await self._read_engine()
        await self._checks.settle(FIRST_CHECKS_WAIT_S)
        gpus = await self._gpus()
        host = self._host_gpus
        reply = await self._router.register(Register(
            name=self.config.name, models=reading.models, gpus=gpus, gpu_type=self.config.gpu_type,
            agent_version=__version__, driver_version=host.driver_version if host else None,
            cuda_version=host.cuda_version if host else None, checks=self._checks.results(),
            engine_key=self.engine.key, engine_tls_sha256=self._tls_pin(), agent_started_us=self._started_us,
        ))
        self.host_id = reply.host_id
        if reply.heartbeat_interval_s > 0:  # the router knows how long it waits before marking us down
            self._interval = reply.heartbeat_interval_s
        self._note_router_ok()
        if not self._draining:
            self.state = "active"
        log.info("registered with %s as host %s (%s); heartbeat every %.1f s", self._router.base_url,
                 reply.host_id, ", ".join(self._endpoints), self._interval)

    async def _heartbeat(self) -> None:
        assert self._checks is not None
        reading = await self._read_engine()
        draining_sent = self._draining
        reply = await self._router.heartbeat(Heartbeat(
            models=reading.models, in_flight=self._in_flight or 0, gpus=await self._gpus(), draining=draining_sent,
            drain_asked_by=("host" if self._drain_origin == "local" else "router") if draining_sent else None,
            checks=self._checks.results(), engine_key=self.engine.key, engine_tls_sha256=self._tls_pin(),
        ))
        self._note_router_ok()
        self._router_outstanding = reply.outstanding
        self._apply(reply, draining_sent)

    def _tls_pin(self) -> str | None:
        return self.engine.tls.sha256 if self.engine.tls is not None else None

    def _apply(self, reply: HeartbeatReply, draining_sent: bool) -> None:
        if reply.state == "removed":
            self.state = "removed"
            return
        if reply.resume and self._draining and not self._leaving:
            log.info("the operator resumed this host from the router; resuming")
            self._end_drain()
        elif reply.drain and not self._draining:
            self._begin_drain("router")
        elif not reply.drain and self._drain_origin == "router":
            # `drain` stands for as long as the operator's order does; false again means resumed.
            log.info("the router withdrew its drain request; resuming")
            self._end_drain()
        # The router's count means something only if it already knew we were draining.
        if draining_sent and self._draining and reply.outstanding == 0 and self._in_flight == 0:
            self._mark_drained()

    async def _drain_unregistered(self) -> None:
        """Never registered: the router cannot owe anyone a reply from here; wait for the engine only."""
        await self._read_engine()
        if self._in_flight == 0:
            self._mark_drained()

    async def _on_unreachable(self, exc: RouterUnreachable, delay: float) -> None:
        # Warn once per outage; the retries after that go to INFO so a long outage stays readable.
        level = logging.INFO if self._outage_reported else logging.WARNING
        log.log(level, "router unreachable (%s); retrying in %.1f s", exc, delay)
        self._outage_reported = True
        self.router_reachable = False
        if self._draining and self._router_gave_up_on_us():
            await self._read_engine()
            if self._in_flight == 0:
                self._mark_drained()
        await self._pause(delay)

    def _note_router_ok(self) -> None:
        if self._outage_reported:
            log.warning("router reachable again at %s", self._router.base_url)
        self._outage_reported = False
        self.router_reachable = True
        self._last_ok_mono = time.monotonic()
        self._last_heartbeat_at = dt.datetime.now(dt.UTC)

    # -- status --------------------------------------------------------------------------------

    def engine_key(self) -> str:
        """The engines' bearer key (GET /engine-key on the control API, for `tokenmill-host check`)."""
        return self.engine.key

    def status(self) -> AgentStatus:
        beat = self._last_heartbeat_at
        return AgentStatus(
            name=self.config.name,
            state=self.state,
            host_id=self.host_id,
            router_url=self._router.base_url,
            router_reachable=self.router_reachable,
            engine=self.engine.kind,
            models=list(self.config.models),
            endpoints=dict(self._endpoints),
            in_flight=self._in_flight,
            router_outstanding=self._router_outstanding,
            draining=self._draining,
            last_heartbeat_at=beat.isoformat(timespec="seconds") if beat is not None else None,
            heartbeat_interval_s=self._interval,
            agent_version=__version__,
            local_endpoints=dict(self._local_endpoints),
            checks=self._checks.results() if self._checks is not None else [],
            engines=self.engine.describe(),
            engine_events=self.engine.recent_events()[-10:],
        )


async def run_agent(config: AgentConfig) -> int:
    """`tokenmill-host run`: until SIGTERM/SIGINT, then drain, deregister, stop; 0 on a clean exit.

    A second signal stops waiting for the drain.
    """
    agent = Agent(config)
    try:
        await agent.start()
    except (EngineUnavailable, OSError) as exc:
        log.error("cannot start the %s engine: %s", config.engine, exc)
        await agent.stop(drain_timeout_s=0)
        return 2
    try:
        control = await start_control_api(agent, config.control_port, config.drain_timeout_s)
    except OSError as exc:
        log.error("cannot open the control API on 127.0.0.1:%d: %s", config.control_port, exc)
        await agent.stop(drain_timeout_s=0)
        return 2

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            agent.abort_drain()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        log.info("tokenmill-host %s: control API on %s", __version__, control.url)
        await stop.wait()
        log.info("stopping: draining first (a second signal skips the wait)")
        await agent.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await control.stop()
    return 0
