"""One teardown job: a provisioned host leaves cleanly.

drain (the router stops choosing it) -> wait until its requests in flight are done (bounded) ->
teardown playbook over SSH (agent stopped, files and user removed) -> destroy the rented
instance -> remove the host from the fleet. On a rented machine a failed playbook does not stop
the rest: the machine is destroyed anyway, and billing must stop. On the operator's own machine
it does: the host stays drained and enrolled until a teardown succeeds.

A local host (provider local, `serve --local`) has no playbook: its agent process is stopped
(SIGTERM: it drains and deregisters) instead; with no local fleet in this process, its agent
died with the backend that started it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from backend.fleet.providers import Provider, ProviderError
from backend.fleet.providers.errors import label
from backend.fleet.registry import HostState
from backend.provision.hosts import HostRecord
from backend.provision.jobs import Job
from backend.provision.local_hosts import LocalHosts
from backend.provision.playbook import load_named
from backend.provision.reach import ProvisionError, ensure_trusted
from backend.provision.ssh import SshTarget

if TYPE_CHECKING:
    from backend.provision.service import Provisioner

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.2


class TeardownJob:
    def __init__(self, p: Provisioner, job: Job, host: HostState, record: HostRecord, cloud: Provider | None,
                 private_key: Path, *, local_hosts: LocalHosts | None = None) -> None:
        self.p, self.job, self.host, self.record, self.cloud = p, job, host, record, cloud
        self.private_key = private_key
        self.local_hosts = local_hosts
        self.destroyed = False

    async def run(self) -> None:
        p, job, host = self.p, self.job, self.host
        try:
            await p.records.update(host.id, state="tearing_down")
            await self._teardown()
        except asyncio.CancelledError:
            await self._failed("the job was cancelled")
            raise
        except (ProvisionError, ProviderError, ValueError) as exc:
            await self._failed(str(exc))
        except Exception as exc:
            log.exception("teardown job %s failed", job.id)
            await self._failed(f"internal error: {exc!r}")
        finally:
            if self.cloud is not None:
                await self.cloud.aclose()

    async def _teardown(self) -> None:
        p, job, host, record = self.p, self.job, self.host, self.record
        if host.state != "removed":
            await self._drain()
        if record.provider == "local":
            await self._stop_local_agent()
        else:
            await self._remove_agent()
        if record.rented:
            await self._destroy()
        if host.state != "removed":
            job.enter("removing the host", f"removing host {host.name} from the fleet")
            await p.fleet.remove(host)
        await p.records.update(host.id, state="removed")
        job.succeed(f"{host.name} torn down" + (f"; {label(record.provider)} instance {job.instance_id} destroyed"
                                                if record.rented and job.instance_id else ""))
        p.events.add("host.torn_down", host.id, f"{host.name} torn down ({label(record.provider)})")

    async def _drain(self) -> None:
        p, job, host = self.p, self.job, self.host
        job.enter("draining", f"draining {host.name}: the router sends it no new requests "
                              f"({host.outstanding} in flight)")
        await p.fleet.drain(host, by="teardown")
        deadline = p.clock.monotonic() + p.settings.teardown_drain_timeout_s
        while host.outstanding > 0:
            if p.clock.monotonic() > deadline:
                job.add("phase", f"{host.outstanding} requests still in flight after "
                                 f"{p.settings.teardown_drain_timeout_s:g} s (teardown_drain_timeout_s): going on")
                return
            await p.clock.sleep(DRAIN_POLL_S)
        job.add("phase", f"{host.name} drained: no request in flight")

    async def _stop_local_agent(self) -> None:
        job, host = self.job, self.host
        if self.local_hosts is None:
            job.add("phase", f"no local fleet runs in this backend: the agent of {host.name} ended with the backend "
                             "that started it")
            return
        job.enter("stopping the agent", f"stopping the agent of {host.name} (it drains and deregisters)")
        await self.local_hosts.stop_host(host.id)
        job.add("phase", f"the agent of {host.name} stopped")

    async def _remove_agent(self) -> None:
        p, job, host, record = self.p, self.job, self.host, self.record
        if record.ssh_host is None:
            job.add("phase", "no SSH address was recorded (the machine never came up): nothing to remove from it")
            return
        target = SshTarget(host=record.ssh_host, port=record.ssh_port, user=record.ssh_user, key_file=self.private_key)
        job.address = target.address
        job.enter("removing the agent", f"teardown playbook on {target.address}")
        try:
            await ensure_trusted(job, target, p.known_hosts, p.key_waiters,
                                 key_timeout_s=p.settings.host_key_timeout_s, login_deadline=0.0)
            result = await p.runner.run(load_named("teardown"), target, record.teardown_variables,
                                        on_event=lambda e: job.runner_event(e, "teardown"), host_id=host.id)
            problem = None if result.outcome == "succeeded" else f"the teardown playbook failed: {result.error}"
        except ProvisionError as exc:
            problem = f"cannot log in to {target.address}: {exc}"
        if problem is None:
            return
        if not record.rented:
            raise ProvisionError(f"{problem}. Host {host.name} stays drained and enrolled; run the teardown again "
                                 "once the machine is reachable")
        # The machine is destroyed next: whatever the playbook left dies with it.
        job.add("error", f"{problem}; destroying the instance anyway")

    async def _destroy(self) -> None:
        job, record, cloud = self.job, self.record, self.cloud
        assert cloud is not None
        instance_id = record.instance_id
        if instance_id is None:
            found = await cloud.find(record.instance_name)
            if found is None:
                job.add("phase", f"{cloud.label} has no instance named {record.instance_name!r}: nothing bills")
                self.destroyed = True
                return
            instance_id = found.instance_id
        job.instance_id = instance_id
        job.enter("destroying the instance", f"destroying {cloud.label} instance {instance_id}")
        await cloud.destroy(instance_id)
        self.destroyed = True
        job.add("phase", f"destroyed {cloud.label} instance {instance_id}: it no longer bills")

    async def _failed(self, error: str) -> None:
        p, job, host = self.p, self.job, self.host
        try:
            await p.records.update(host.id, state="failed")
        except Exception:
            log.exception("teardown job %s: recording the failure failed", job.id)
        if self.record.rented and not self.destroyed:
            what = job.instance_id or self.record.instance_id or f"named {self.record.instance_name!r}"
            error += (f"\n{label(self.record.provider)} instance {what} still bills: destroy it in the "
                      f"{label(self.record.provider)} console, or retry with `tokenmill teardown {host.id}`")
        job.fail(error)
        p.events.add("host.teardown_failed", host.id, f"tearing down {host.name} failed: {error.splitlines()[0]}",
                     "error")
