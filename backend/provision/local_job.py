"""One provisioning job on provider "local": a simulated host joins as a rented one would.

choose an offer -> enrol the host -> "rent" it (LocalProvider: books only) -> start its agent
(LocalHosts: a real host agent process running the simulated engine) -> first heartbeat and
passed check.

Same job, events and provisioned_host record as a real rental, without SSH, wheel or playbooks:
the agent runs on this machine. Whatever fails (or cancels the job) stops the agent, ends the
instance and removes the host before the job ends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from backend.catalogue import ModelEntry
from backend.fleet.providers import NoOfferFits, Offer, ProviderError, cheapest_offer, fitting_offers
from backend.fleet.providers.local import LocalProvider
from backend.fleet.registry import HostState
from backend.money import format_usd
from backend.provision.jobs import Job
from backend.provision.local_hosts import LocalHosts
from backend.provision.provision_job import ALL_KINDS, wait_until_serving
from backend.provision.reach import ProvisionError
from backend.wire.provision import ProvisionRequest

if TYPE_CHECKING:
    from backend.provision.service import Provisioner

log = logging.getLogger(__name__)


class LocalProvisionJob:
    def __init__(self, p: Provisioner, job: Job, req: ProvisionRequest, cloud: LocalProvider, hosts: LocalHosts,
                 entry: ModelEntry) -> None:
        self.p, self.job, self.req, self.cloud, self.hosts, self.entry = p, job, req, cloud, hosts, entry
        self.host: HostState | None = None
        self.instance_id: str | None = None
        self.started = False  # the agent process was started

    async def run(self) -> None:
        try:
            await self._provision()
        except asyncio.CancelledError:
            await self._cleanup("the job was cancelled")
            raise
        except (ProvisionError, ProviderError, NoOfferFits, ValueError, OSError) as exc:
            await self._cleanup(str(exc))
        except Exception as exc:  # a bug: still clean up, and say so
            log.exception("local provision job %s failed", self.job.id)
            await self._cleanup(f"internal error: {exc!r}")

    async def _provision(self) -> None:
        p, job, req, cloud = self.p, self.job, self.req, self.cloud
        offer = await self._choose_offer()
        name = req.name or f"local-{offer.gpu or 'host'}-{secrets.token_hex(3)}"
        job.enter("enrolling the host", f"enrolling host {name!r} (simulated, {format_usd(offer.price_per_hour)}/h)")
        self.host, token = await p.fleet.enroll(name, provider="local", cost_per_hour=offer.price_per_hour)
        host = self.host
        job.host_id, job.host_name = host.id, host.name
        await p.records.add(host_id=host.id, provider="local", instance_name=name, model=self.entry.id)

        job.enter("renting", f"renting {cloud.label} offer {offer.offer_id} as {name!r}")
        instance = await cloud.create(offer, name=name, ssh_public_key="")
        self.instance_id = job.instance_id = instance.instance_id
        await p.records.update(host.id, instance_id=instance.instance_id)
        job.add("phase", f"rented {cloud.label} instance {instance.instance_id} ({offer.gpu_name} x{offer.gpu_count}, "
                         f"{format_usd(offer.price_per_hour)}/h, simulated)")

        assert offer.gpu is not None  # fitting offers are of catalogue GPUs
        job.enter("starting the agent", f"starting a host agent for {name} (simulated engine, {self.entry.id})")
        self.started = True
        await self.hosts.start_host(host.id, token, name, self.entry.id, offer.gpu)
        await wait_until_serving(p, job, host, self.entry.id)
        await p.records.update(host.id, state="serving")
        job.succeed(f"{host.name} serves {self.entry.id} ({cloud.label} instance {instance.instance_id}, "
                    f"{format_usd(host.cost_per_hour)}/h, simulated)")
        p.events.add("host.provisioned", host.id, f"{host.name} provisioned ({cloud.label}), serving {self.entry.id}")

    async def _choose_offer(self) -> Offer:
        req, job, catalogue = self.req, self.job, self.p.catalogue
        job.enter("choosing an offer", f"asking {self.cloud.label} for offers" + (f" of {req.gpu}" if req.gpu else ""))
        offers = await self.cloud.list_offers(req.gpu)
        if req.offer_id is not None:
            chosen = next((o for o in offers if o.offer_id == req.offer_id), None)
            if chosen is None:
                raise ProvisionError(f"{self.cloud.label} has no offer {req.offer_id!r} (not of "
                                     f"{req.gpu or 'any catalogue GPU'}): list the offers again")
            cheapest_offer([chosen], self.entry, catalogue, kinds=ALL_KINDS)  # it must hold the model
        else:
            ranked = fitting_offers(offers, self.entry, catalogue)
            if not ranked:
                cheapest_offer(offers, self.entry, catalogue)  # raises NoOfferFits saying why
            chosen = ranked[0]
        job.add("phase", f"offer {chosen.offer_id}: {chosen.gpu_name} x{chosen.gpu_count}, "
                         f"{format_usd(chosen.price_per_hour)}/h ({chosen.kind}, simulated)")
        return chosen

    async def _cleanup(self, error: str) -> None:
        """Stop the agent, end the instance, remove the host; then fail the job with `error`."""
        p, job, host = self.p, self.job, self.host
        leftovers: list[str] = []
        if host is not None:
            job.add("phase", f"failed: {error.splitlines()[0]}; cleaning up")
        try:
            if self.started and host is not None:
                job.enter("cleanup: stopping the agent", f"stopping the agent of {host.name}")
                await self.hosts.stop_host(host.id)
            if self.instance_id is not None:
                await self.cloud.destroy(self.instance_id)
                job.add("phase", f"ended {self.cloud.label} instance {self.instance_id}")
            if host is not None:
                job.enter("cleanup: removing the host", f"removing host {host.name} from the fleet")
                if host.state != "removed":
                    await p.fleet.remove(host)
                await p.records.update(host.id, state="removed")
        except Exception as exc:  # cleanup must end the job whatever happens
            log.exception("local provision job %s: cleanup failed", job.id)
            leftovers.append(f"cleanup failed: {exc!r}")
        job.fail(error + "".join(f"\n{line}" for line in leftovers))
        p.events.add("provision.failed", host.id if host is not None else job.id,
                     f"provisioning {self.entry.id} on {self.cloud.label} failed: {error.splitlines()[0]}"
                     + (f" ({'; '.join(leftovers)})" if leftovers else ""), "error" if leftovers else "warning")
