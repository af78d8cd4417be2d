"""One provisioning job: a machine becomes a serving host.

choose an offer -> wheel -> enrol the host -> rent the instance -> wait until it runs -> SSH port
-> host key (may wait for the operator) -> bootstrap playbook -> first heartbeat and passed check.

Whatever fails (or cancels the job) is cleaned up before the job ends: the instance this job
rented is destroyed and the host removed, and each of those is an event, so a failed job never
leaves a machine billing silently. Where cleaning up itself fails, the job's error and an
error-level fleet event say what still bills and how to end it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from backend.catalogue import ModelEntry
from backend.fleet.providers import (
    Instance,
    NoOfferFits,
    Offer,
    OfferTaken,
    OrphanedInstance,
    Provider,
    ProviderError,
    cheapest_offer,
    fitting_offers,
)
from backend.fleet.providers.base import CreateOptions, OfferKind
from backend.fleet.providers.errors import label
from backend.fleet.providers.ssh import SshProvider
from backend.fleet.registry import HostState
from backend.money import format_usd
from backend.provision.jobs import Job
from backend.provision.playbook import load_named
from backend.provision.reach import ProvisionError, ensure_trusted, wait_for_port
from backend.provision.run_events import Event, StepFailed
from backend.provision.ssh import SshTarget
from backend.provision.variables import bootstrap_variables, rented_engine_ports, teardown_variables
from backend.provision.wheel import WheelError
from backend.wire.provision import ProvisionRequest

if TYPE_CHECKING:
    from backend.provision.service import Provisioner

log = logging.getLogger(__name__)

CREATE_ATTEMPTS = 3  # offers taken by someone else before we give up
READY_POLL_S = 0.2
CLEANUP_TEARDOWN_TIMEOUT_S = 300.0
ERROR_OUTPUT_LINES = 15  # of the failed step's output, in the job's error
ALL_KINDS: tuple[OfferKind, ...] = ("on_demand", "community", "spot")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
OWN_MACHINE_SSH_WAIT_S = 30.0


class ProvisionJob:
    def __init__(self, p: Provisioner, job: Job, req: ProvisionRequest, cloud: Provider, entry: ModelEntry,
                 private_key: Path, public_key: str) -> None:
        self.p, self.job, self.req, self.cloud, self.entry = p, job, req, cloud, entry
        self.private_key, self.public_key = private_key, public_key
        self.rented = req.provider != "ssh"
        self.host: HostState | None = None
        self.instance_name = ""
        self.instance: Instance | None = None
        self.touched = False  # the bootstrap playbook reached the machine
        self.teardown_values: dict[str, object] = {}

    async def run(self) -> None:
        job = self.job
        try:
            await self._provision()
        except asyncio.CancelledError:
            await self._cleanup("the job was cancelled")
            raise
        except (ProvisionError, ProviderError, NoOfferFits, WheelError, ValueError) as exc:
            await self._cleanup(str(exc))
        except Exception as exc:  # a bug: still clean up, and say so
            log.exception("provision job %s failed", job.id)
            await self._cleanup(f"internal error: {exc!r}")
        finally:
            await self.cloud.aclose()

    # ------------------------------------------------------------------ the happy path
    async def _provision(self) -> None:
        p, job, req = self.p, self.job, self.req
        offer, others = await self._choose_offer()
        job.enter("preparing the tokenmill wheel")
        wheel = await p.wheel.get()
        job.add("phase", f"wheel: {wheel.name}")

        name = req.name or f"{req.provider}-{offer.gpu or 'host'}-{secrets.token_hex(3)}"
        job.enter("enrolling the host", f"enrolling host {name!r} ({label(req.provider)}, "
                                        f"{format_usd(offer.price_per_hour)}/h)")
        self.host, token = await p.fleet.enroll(name, provider=req.provider, cost_per_hour=offer.price_per_hour)
        job.host_id, job.host_name = self.host.id, self.host.name
        # Unique at the provider, so that an instance whose create we never heard back from is found by it.
        self.instance_name = name if not req.name else f"{name}-{self.host.id.removeprefix('h_')}"
        await p.records.add(host_id=self.host.id, provider=req.provider, instance_name=self.instance_name,
                            model=self.entry.id, ssh_host=req.ssh_host, ssh_port=req.ssh_port, ssh_user=req.ssh_user)

        # real I/O: a machine booting at a cloud, then its sshd (reach.py waits on the same clock)
        boot_deadline = time.monotonic() + p.settings.provision_boot_timeout_s  # real I/O
        self.instance = await self._rent(offer, others)
        if self.rented:
            self.instance = await self._wait_running(self.instance, boot_deadline)
        inst = self.instance
        assert inst.ssh_host is not None
        target = SshTarget(host=inst.ssh_host, port=inst.ssh_port, user=inst.ssh_user, key_file=self.private_key)
        job.address = target.address
        await p.records.update(self.host.id, ssh_host=inst.ssh_host, ssh_port=inst.ssh_port, ssh_user=inst.ssh_user)

        job.enter("waiting for SSH", f"waiting for SSH on {target.address}")
        # A rented machine may still be booting; the operator's own is up or not: no long wait for it.
        port_deadline = boot_deadline if self.rented else time.monotonic() + OWN_MACHINE_SSH_WAIT_S  # real I/O
        await wait_for_port(job, inst.ssh_host, inst.ssh_port, port_deadline)
        job.enter("checking the host key")
        # trust_new_host_key only for an instance this job itself just created: the operator's own
        # machine (provider ssh) always waits for the operator.
        await ensure_trusted(job, target, p.known_hosts, p.key_waiters, key_timeout_s=p.settings.host_key_timeout_s,
                             login_deadline=boot_deadline if self.rented else 0.0,
                             trust_new=self.rented and req.trust_new_host_key, events=p.events)

        await self._bootstrap(target, offer, token, wheel)
        await self._wait_ready()
        await p.records.update(self.host.id, state="serving")
        job.succeed(f"{self.host.name} serves {self.entry.id} from {target.address}"
                    + (f" ({label(req.provider)} instance {inst.instance_id}, "
                       f"{format_usd(self.host.cost_per_hour)}/h)" if self.rented else ""))
        p.events.add("host.provisioned", self.host.id, f"{self.host.name} provisioned ({label(req.provider)}), "
                                                       f"serving {self.entry.id}")

    async def _choose_offer(self) -> tuple[Offer, list[Offer]]:
        """The offer to rent and, when it was chosen for the operator, the next best ones."""
        req, job, catalogue = self.req, self.job, self.p.catalogue
        if not self.rented:
            assert req.ssh_host is not None
            offer = SshProvider.address_offer(req.ssh_host, port=req.ssh_port, user=req.ssh_user, gpu=req.gpu,
                                              gpu_count=req.gpu_count)
            job.address = offer.offer_id
            job.add("phase", f"the operator's machine {offer.offer_id}: nothing is rented")
            return offer, []
        job.enter("choosing an offer", f"asking {self.cloud.label} for offers"
                                       + (f" of {req.gpu}" if req.gpu else ""))
        offers = await self.cloud.list_offers(req.gpu)
        if req.offer_id is not None:
            offer = next((o for o in offers if o.offer_id == req.offer_id), None)
            if offer is None:
                raise ProvisionError(f"{self.cloud.label} has no offer {req.offer_id!r} now (taken, or not of "
                                     f"{req.gpu or 'any catalogue GPU'}): list the offers again")
            # The operator picked it: any kind will do, but it must hold the model.
            cheapest_offer([offer], self.entry, catalogue, kinds=ALL_KINDS)
            chosen, others = offer, []
        else:
            ranked = fitting_offers(offers, self.entry, catalogue)
            if not ranked:
                cheapest_offer(offers, self.entry, catalogue)  # raises NoOfferFits saying why
            chosen, others = ranked[0], ranked[1:CREATE_ATTEMPTS]
        where = f", {chosen.region}" if chosen.region else ""
        job.add("phase", f"offer {chosen.offer_id}: {chosen.gpu_name} x{chosen.gpu_count}, "
                         f"{format_usd(chosen.price_per_hour)}/h ({chosen.kind}{where})")
        return chosen, others

    async def _rent(self, offer: Offer, others: list[Offer]) -> Instance:
        job, cloud = self.job, self.cloud
        if not self.rented:
            return await cloud.create(offer, name=self.instance_name, ssh_public_key=self.public_key)
        job.enter("renting", f"renting {cloud.label} offer {offer.offer_id} as {self.instance_name!r}")
        # Exposing the ports the engine will listen on (bootstrap_variables configures the agent with them).
        options = CreateOptions(ports=rented_engine_ports(self.p.settings.provision_variables))
        candidates = [offer, *others]
        for i, candidate in enumerate(candidates):
            try:
                instance = await cloud.create(candidate, name=self.instance_name, ssh_public_key=self.public_key,
                                              options=options)
            except OfferTaken as exc:
                if i == len(candidates) - 1:
                    raise
                job.add("phase", f"{exc}; trying the next cheapest offer")
                continue
            except OrphanedInstance as exc:
                job.instance_id = exc.instance_id
                raise
            assert self.host is not None
            if candidate is not offer:
                # The host was enrolled at the first offer's price; the GPU cost meter must see this one's.
                await self.p.fleet.set_cost(self.host, candidate.price_per_hour)
            job.instance_id = instance.instance_id
            await self.p.records.update(self.host.id, instance_id=instance.instance_id)
            price = format_usd(candidate.price_per_hour)
            job.add("phase", f"rented {cloud.label} instance {instance.instance_id} "
                             f"({candidate.gpu_name} x{candidate.gpu_count}, {price}/h): it bills until destroyed")
            return instance
        raise AssertionError("the loop returns or raises")

    async def _wait_running(self, instance: Instance, deadline: float) -> Instance:
        job, cloud = self.job, self.cloud
        job.enter("waiting for the instance", f"waiting for {cloud.label} instance {instance.instance_id} to run")
        said = ""
        while True:
            instance = await cloud.status(instance.instance_id)
            if instance.provider_state != said:
                said = instance.provider_state
                job.add("phase", f"instance {instance.instance_id}: {said or instance.state}")
            if instance.state == "running" and instance.ssh_host:
                return instance
            if instance.state in ("failed", "stopped", "terminated"):
                raise ProvisionError(f"{cloud.label} instance {instance.instance_id} is {instance.state} "
                                     f"({instance.provider_state or 'no detail'}) instead of running")
            if time.monotonic() + self.p.settings.provision_poll_interval_s > deadline:  # real I/O
                raise ProvisionError(f"{cloud.label} instance {instance.instance_id} was not running with an SSH "
                                     f"address within {self.p.settings.provision_boot_timeout_s:g} s "
                                     f"(provision_boot_timeout_s); it was {instance.provider_state or instance.state}")
            await asyncio.sleep(self.p.settings.provision_poll_interval_s)  # real I/O: the cloud's API

    async def _bootstrap(self, target: SshTarget, offer: Offer, token: str, wheel: Path) -> None:
        p, job = self.p, self.job
        assert self.host is not None and self.instance is not None and self.instance.ssh_host is not None
        bootstrap, teardown = load_named("bootstrap"), load_named("teardown")
        extra = dict(p.settings.provision_variables)
        router_url = p.settings.router_public_url
        values = bootstrap_variables(catalogue=p.catalogue, model=self.entry.id, engine=self.req.engine,
                                     gpu=offer.gpu, gpu_count=offer.gpu_count, router_url=router_url,
                                     host_token=token, wheel=wheel, ssh_host=self.instance.ssh_host,
                                     rented=self.rented, extra=extra, playbook=bootstrap,
                                     port_map=self.instance.ports)
        resolved = bootstrap.resolve(values)  # VariableError (a ValueError) before anything runs
        self.teardown_values = teardown_variables(resolved, extra, teardown)
        await p.records.update(self.host.id, teardown_variables=self.teardown_values)
        job.enter("bootstrap", f"bootstrap on {target.address}: engine {self.req.engine}, model {self.entry.id}, "
                               f"router {router_url}")
        for port, public in self.instance.ports.items():
            if port in rented_engine_ports(extra):
                job.add("phase", f"the engine's port {port} is reached at {self.instance.ssh_host}:{public} "
                                 f"({self.cloud.label} maps it)")
        if self.rented and urlsplit(router_url).hostname in LOOPBACK:
            job.add("phase", f"warning: the agent is told to reach the router at {router_url}, which is this "
                             "machine's loopback address: a rented machine cannot reach it. Set public_url")
        failed: list[StepFailed] = []

        def on_event(event: Event) -> None:
            if isinstance(event, StepFailed):
                failed.append(event)
            job.runner_event(event, "bootstrap")

        self.touched = True
        result = await p.runner.run(bootstrap, target, values, on_event=on_event, host_id=self.host.id)
        if result.outcome != "succeeded":
            output = "".join(f"\n  {line}" for line in (failed[-1].output[-ERROR_OUTPUT_LINES:] if failed else ()))
            raise ProvisionError(f"bootstrap failed: {result.error}{output}")

    async def _wait_ready(self) -> None:
        assert self.host is not None
        await wait_until_serving(self.p, self.job, self.host, self.entry.id)

    # ------------------------------------------------------------------ when it fails
    async def _cleanup(self, error: str) -> None:
        """Leave nothing billing, say what was done, then fail the job with `error` (and what remains)."""
        p, job, host = self.p, self.job, self.host
        if host is not None:
            job.add("phase", f"failed: {error.splitlines()[0]}; cleaning up")
        leftovers: list[str] = []
        try:
            if p.settings.provision_keep_failed and host is not None:
                leftovers.append(self._kept())
            else:
                if self.touched and not self.rented:
                    leftovers += await self._remove_agent()
                if self.rented and host is not None:
                    leftovers += await self._destroy()
                if host is not None and not leftovers:
                    job.enter("cleanup: removing the host", f"removing host {host.name} from the fleet")
                    if host.state != "removed":
                        await p.fleet.remove(host)
            if host is not None:
                await p.records.update(host.id, state="failed" if leftovers else "removed")
        except Exception as exc:  # cleanup must end the job whatever happens
            log.exception("provision job %s: cleanup failed", job.id)
            leftovers.append(f"cleanup failed: {exc!r}")
        message = error + "".join(f"\n{line}" for line in leftovers)
        job.fail(message)
        subject = host.id if host is not None else job.id
        p.events.add("provision.failed", subject, f"provisioning {self.entry.id} on {label(self.req.provider)} "
                     f"failed: {error.splitlines()[0]}" + (f" ({'; '.join(leftovers)})" if leftovers else ""),
                     "error" if leftovers else "warning")

    def _kept(self) -> str:
        assert self.host is not None
        what = (f"{self.cloud.label} instance {self.job.instance_id or self.instance_name!r} STILL BILLS"
                if self.rented else f"whatever bootstrap installed on {self.job.address} stays")
        text = (f"kept for debugging (provision_keep_failed): {what}; host {self.host.name} stays enrolled. "
                f"End it with: tokenmill teardown {self.host.id}")
        self.job.add("phase", text)
        return text

    async def _remove_agent(self) -> list[str]:
        """The operator's machine: undo what bootstrap did (it is not ours to destroy)."""
        p, job, host = self.p, self.job, self.host
        assert host is not None and self.instance is not None and self.instance.ssh_host is not None
        target = SshTarget(host=self.instance.ssh_host, port=self.instance.ssh_port, user=self.instance.ssh_user,
                           key_file=self.private_key)
        job.enter("cleanup: removing the agent", f"removing what bootstrap installed on {target.address}")
        try:
            result = await asyncio.wait_for(  # real I/O: a playbook over SSH
                p.runner.run(load_named("teardown"), target, {**self.teardown_values, "drain_timeout_s": 30},
                             on_event=lambda e: job.runner_event(e, "teardown"), host_id=host.id),
                CLEANUP_TEARDOWN_TIMEOUT_S)
        except (TimeoutError, ValueError) as exc:
            result_error = f"{exc or 'timed out'}"
        else:
            if result.outcome == "succeeded":
                return []
            result_error = result.error or result.outcome
        if host.state == "active":
            await p.fleet.drain(host, by="provisioning cleanup")
        return [f"the teardown playbook failed on {target.address} ({result_error}); host {host.name} is drained "
                f"and stays enrolled: run `tokenmill teardown {host.id}` once the machine is reachable"]

    async def _destroy(self) -> list[str]:
        job, cloud = self.job, self.cloud
        instance_id = job.instance_id
        try:
            if instance_id is None:
                # The create may have reached the provider although no answer reached us.
                found = await cloud.find(self.instance_name) if self.instance_name else None
                if found is None:
                    return []
                instance_id = job.instance_id = found.instance_id
            job.enter("cleanup: destroying the instance", f"destroying {cloud.label} instance {instance_id} so that "
                                                         "it stops billing")
            await cloud.destroy(instance_id)
        except ProviderError as exc:
            what = instance_id or f"named {self.instance_name!r}"
            return [f"COULD NOT DESTROY {cloud.label} instance {what} ({exc}): it still bills. Destroy it in the "
                    f"{cloud.label} console, or retry with `tokenmill teardown {job.host_id}`"]
        job.add("phase", f"destroyed {cloud.label} instance {instance_id}: it no longer bills")
        return []


async def wait_until_serving(p: Provisioner, job: Job, host: HostState, model: str) -> None:
    """Until the router has the host up with a passed hardware check for the model (at most
    provision_ready_timeout_s)."""
    job.enter("waiting for the first heartbeat")
    deadline = p.clock.monotonic() + p.settings.provision_ready_timeout_s
    while True:
        replica = host.replicas.get(model)
        if p.fleet.is_up(host) and replica is not None and replica.check is not None:
            if not replica.check.passed:
                raise ProvisionError(f"{model} failed its hardware check on {host.name}: {replica.check.summary}")
            job.add("phase", f"{host.name} is up; {model} passed its check: {replica.check.summary}")
            return
        if p.clock.monotonic() > deadline:
            raise ProvisionError(f"the router did not see {host.name} up with a checked {model} within "
                                 f"{p.settings.provision_ready_timeout_s:g} s (provision_ready_timeout_s)")
        await p.clock.sleep(READY_POLL_S)
