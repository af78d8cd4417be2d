"""Simulated hosts: what a host agent tells the router, sent in-process on the virtual clock.

The Provisioner rents them through provider `local` (this class is its LocalHosts, as the local
fleet of `serve --local` is), so a simulated rental takes the production job path: offer, enrol,
"rent", start the agent, first heartbeat and passed check; a teardown drains it, stops the agent
and removes the host. The agent registers after a boot delay (a rented machine downloads the model
and starts vLLM), then heartbeats every interval with its engine's metrics, and follows a drain the
router asks for, as hostkit's agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from backend.catalogue import Catalogue
from backend.catalogue.capacity import replica_capacity
from backend.fleet.registry import Fleet, HostState
from backend.runtime.clock import Clock
from backend.simulate.engines import SimEngine
from hostkit import protocol

BOOT_S = 240.0  # a rented host: boot, model download, engine start, hardware check


@dataclass
class SimHost:
    host: HostState
    model: str
    gpu: str
    gpu_count: int
    engine: SimEngine
    task: asyncio.Task | None = None
    draining: bool = False


class SimHosts:
    """Provider `local`'s hosts in a simulation (backend/provision/local_hosts.py's protocol)."""

    def __init__(self, fleet: Fleet, catalogue: Catalogue, clock: Clock, *, heartbeat_s: float,
                 boot_s: float = BOOT_S) -> None:
        self.fleet, self.catalogue, self.clock = fleet, catalogue, clock
        self.heartbeat_s, self.boot_s = heartbeat_s, boot_s
        self.hosts: dict[str, SimHost] = {}

    # ------------------------------------------------------------------ LocalHosts
    async def start_host(self, host_id: str, token: str, name: str, model: str, gpu: str, *,
                         gpu_count: int = 1, boot_s: float | None = None) -> None:
        host = self.fleet.host(host_id)
        entry, card = self.catalogue.model_by_id[model], self.catalogue.gpu_by_id[gpu]
        gpu_count = max(gpu_count, self._offer_count(host, gpu))
        cap = replica_capacity(entry, card, gpu_count)
        if cap is None:
            raise ValueError(f"{model} does not fit on {gpu_count} x {gpu}")
        sim = SimHost(host, model, gpu, gpu_count, SimEngine(cap))
        self.hosts[host_id] = sim
        delay = self.boot_s if boot_s is None else boot_s
        sim.task = asyncio.create_task(self._agent(sim, delay), name=f"sim-agent-{name}")

    async def stop_host(self, host_id: str) -> None:
        sim = self.hosts.pop(host_id, None)
        if sim is None:
            return
        if sim.task is not None:
            sim.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim.task
        if sim.host.registered and sim.host.state != "removed":
            self.fleet.deregister(sim.host)

    async def close(self) -> None:
        for host_id in list(self.hosts):
            await self.stop_host(host_id)

    # ------------------------------------------------------------------ the agent
    def _offer_count(self, host: HostState, gpu: str) -> int:
        """GPUs of the offer the host was rented at (its price per hour names it): 1 if unknown."""
        counts = [o.gpu_count for o in self.catalogue.offers if o.gpu == gpu and o.price_per_hour == host.cost_per_hour]
        return counts[0] if counts else 1

    def _served(self, sim: SimHost) -> list[protocol.ServedModel]:
        running, waiting, kv = sim.engine.metrics()
        metrics = protocol.EngineMetrics(num_requests_running=running, num_requests_waiting=waiting,
                                         kv_cache_usage_perc=kv, max_num_seqs=sim.engine.capacity.slots)
        return [protocol.ServedModel(model=sim.model, endpoint=f"http://sim.invalid/{sim.host.id}", engine="sim",
                                     metrics=metrics)]

    def _checks(self, sim: SimHost) -> list[protocol.CheckResult]:
        cap = sim.engine.capacity
        return [protocol.CheckResult(model=sim.model, passed=True, checked_us=self.clock.now_us(),
                                     summary=f"passed: simulated, {cap.decode_tps:.0f} tok/s single stream",
                                     decode_tps=cap.decode_tps)]

    async def _agent(self, sim: SimHost, boot_s: float) -> None:
        await self.clock.sleep(boot_s)
        card = self.catalogue.gpu_by_id[sim.gpu]
        checks = self._checks(sim)
        self.fleet.register(sim.host, protocol.Register(name=sim.host.name, models=self._served(sim), gpu_type=sim.gpu,
                                                        agent_version="simulated", checks=checks))
        del card
        while True:
            await self.clock.sleep(self.heartbeat_s)
            beat = protocol.Heartbeat(models=self._served(sim), in_flight=sim.host.outstanding, checks=checks,
                                      draining=sim.draining, drain_asked_by="router" if sim.draining else None)
            reply = await self.fleet.heartbeat(sim.host, beat)
            sim.draining = reply.drain  # follow the router's drain and resume, as hostkit's agent does
