"""The Provisioner: machines become serving hosts, and hosts leave, as jobs the operator follows.

    job = await services.provisioner.provision(ProvisionRequest(model=..., provider="vast"))
    job = await services.provisioner.teardown(host_id)

A request is checked before its job starts (RequestError: unknown model, missing credentials,
no SSH key, no wheel...), so that a job only fails for reasons found on the way. Jobs run as
asyncio tasks (provision_job.py, teardown_job.py); what teardown needs outlives the process in
provisioned_host (hosts.py). A job that a restart cut short leaves its row "interrupted", and
start() says so loudly: its instance may still bill until it is torn down.

Provider "local" is the simulated fleet `tokenmill serve --local` runs itself: refused unless that
fleet is here (it sets `local_hosts`, local_hosts.py); then a local "rental" starts a real host
agent on this machine (local_job.py) and its teardown stops it. Provider "ssh" is a machine the
operator already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.catalogue import Catalogue, ModelEntry
from backend.fleet.providers import PROVIDERS, Provider, ProviderError, provider, ssh_public_key
from backend.fleet.providers.errors import label
from backend.fleet.providers.local import LocalProvider
from backend.fleet.registry import Fleet, FleetError
from backend.metrics.report import MetricsReport
from backend.provision.hosts import ProvisionedHosts
from backend.provision.jobs import Job, JobBook
from backend.provision.known_hosts import HostKeyChanged, KnownHosts
from backend.provision.local_hosts import LocalHosts
from backend.provision.local_job import LocalProvisionJob
from backend.provision.offers import list_offers
from backend.provision.playbook import load_named
from backend.provision.provision_job import ProvisionJob
from backend.provision.reach import KeyWaiters
from backend.provision.runner import PlaybookRunner
from backend.provision.teardown_job import TeardownJob
from backend.provision.variables import VariablesError, check_extra
from backend.provision.wheel import WheelError, WheelSource
from backend.runtime.bus import EventBus
from backend.settings import Settings
from backend.wire.provision import HostKeyOut, OffersOut, ProvisionRequest, RunOut

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 30.0  # how long shutdown waits for cancelled jobs to clean up after themselves

DEMAND_WINDOW_S = 600  # "current demand": the last 10 minutes, as the console's model rates


class RequestError(ValueError):
    """A request refused before any job starts; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_value",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


class Provisioner:
    def __init__(self, settings: Settings, engine: AsyncEngine, catalogue: Catalogue, fleet: Fleet,
                 events: EventBus, metrics: MetricsReport) -> None:
        self.settings, self.catalogue, self.fleet, self.events = settings, catalogue, fleet, events
        self.metrics = metrics
        self.clock = fleet.clock  # jobs wait on the fleet (heartbeats, drains) on its clock
        self.known_hosts = KnownHosts.in_data_dir(settings.data_dir)
        self.runner = PlaybookRunner(engine, self.known_hosts)
        self.records = ProvisionedHosts(engine)
        self.jobs = JobBook()
        self.wheel = WheelSource(settings.host_wheel, settings.data_dir)
        self.key_waiters = KeyWaiters()
        # Provider local: the fleet that runs simulated hosts sets local_hosts (`serve --local`); one
        # LocalProvider for the process, so that its instance records last as long as the agents.
        self.local_hosts: LocalHosts | None = None
        self.local_provider = LocalProvider(catalogue)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Say which jobs the last run of the backend left unfinished: their machines may still bill."""
        await self.runner.runs.interrupt_running()
        for rec in await self.records.in_state("provisioning", "tearing_down"):
            await self.records.update(rec.host_id, state="interrupted")
            if rec.provider == "local":  # a simulated host: its agent died with the backend; nothing bills
                self.events.add("provision.interrupted", rec.host_id,
                                f"the backend stopped while {rec.state.replace('_', ' ')} local host "
                                f"{rec.instance_name}: its agent ended with it; `serve --local` tears it down",
                                "warning")
                continue
            what = (f"{label(rec.provider)} instance {rec.instance_id or repr(rec.instance_name)} may still bill"
                    if rec.rented else f"the agent on {rec.address or 'the machine'} may be half installed")
            self.events.add("provision.interrupted", rec.host_id,
                            f"the backend stopped while {rec.state.replace('_', ' ')} this host: {what}; "
                            f"tear it down with `tokenmill teardown {rec.host_id}`", "error")

    async def close(self) -> None:
        """Cancel running jobs; each cleans up (destroys what it rented) within CLOSE_GRACE_S."""
        tasks = [j.task for j in self.jobs.all() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
            for task in pending:
                # Cut its cleanup short: its row stays provisioning/tearing_down, which the next start() reports.
                log.warning("%s still cleaning up after %g s at shutdown: stopped", task.get_name(), CLOSE_GRACE_S)
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    # ------------------------------------------------------------------ offers
    async def demand(self, model: str) -> int | None:
        """The model's revenue per hour less host payouts at current demand; None without demand."""
        rates = (await self.metrics.model(model, self.clock.now_us(), DEMAND_WINDOW_S)).rates
        if rates.revenue_per_h_nano <= 0:
            return None
        return rates.revenue_per_h_nano - rates.payouts_per_h_nano

    async def offers(self, model: str, *, gpu: str | None = None, only: str | None = None) -> OffersOut:
        try:
            return await list_offers(self.settings, self.catalogue, self.demand, model, gpu=gpu, only=only,
                                     local=self.local_provider if self.local_hosts is not None else None)
        except KeyError:
            raise RequestError(f"no model {model!r} in the catalogue", status=404, code="model_not_found",
                               param="model") from None
        except ValueError as exc:
            param = str(exc).split(":")[0]
            raise RequestError(str(exc), param=param) from None

    # ------------------------------------------------------------------ jobs
    async def provision(self, req: ProvisionRequest) -> Job:
        entry = self.catalogue.model_by_id.get(req.model)
        if entry is None:
            raise RequestError(f"no model {req.model!r} in the catalogue", status=404, code="model_not_found",
                               param="model")
        if req.provider not in PROVIDERS:
            raise RequestError(f"unknown provider {req.provider!r}: expected one of {', '.join(PROVIDERS)}",
                               param="provider")
        if req.provider == "local" and self.local_hosts is None:
            raise RequestError("provider local is the simulated fleet that `tokenmill serve --local` runs by "
                               "itself: there is nothing to provision. For a machine of yours, use provider ssh "
                               "with its address (ssh_host)", param="provider")
        if req.gpu is not None and req.gpu not in self.catalogue.gpu_by_id:
            raise RequestError(f"unknown GPU {req.gpu!r}: the catalogue lists {', '.join(self.catalogue.gpu_by_id)}",
                               param="gpu")
        if req.provider == "local":
            return self._provision_local(req, entry)
        if req.gpu_count < 1:
            raise RequestError(f"gpu_count must be at least 1, got {req.gpu_count}", param="gpu_count")
        if req.provider == "ssh":
            self._check_ssh_request(req)
        elif req.ssh_host is not None:
            raise RequestError(f"ssh_host is for provider ssh; {label(req.provider)} gives the address of the "
                               "machine it rents", param="ssh_host")
        private_key = self._private_key()
        public_key = self._public_key() if req.provider != "ssh" else ""
        self._check_playbook_variables()
        try:
            self.wheel.check()
        except WheelError as exc:
            raise RequestError(str(exc), code="no_wheel", param="host_wheel") from None
        try:
            cloud = provider(req.provider, self.settings, catalogue=self.catalogue)
        except ProviderError as exc:
            raise RequestError(str(exc), code="provider_unavailable", param="provider") from None

        job = self.jobs.new("provision", req.provider, entry.id, reason=req.reason)
        flow = ProvisionJob(self, job, req, cloud, entry, private_key, public_key)
        job.task = asyncio.create_task(flow.run(), name=f"provision-{job.id}")
        job.task.add_done_callback(_retrieve)
        return job

    def _provision_local(self, req: ProvisionRequest, entry: ModelEntry) -> Job:
        """A simulated host started on this machine (the engine is always the simulated one)."""
        assert self.local_hosts is not None
        if req.ssh_host is not None:
            raise RequestError("ssh_host is for provider ssh; local hosts run on this machine", param="ssh_host")
        job = self.jobs.new("provision", "local", entry.id, reason=req.reason)
        flow = LocalProvisionJob(self, job, req, self.local_provider, self.local_hosts, entry)
        job.task = asyncio.create_task(flow.run(), name=f"provision-{job.id}")
        job.task.add_done_callback(_retrieve)
        return job

    def _check_ssh_request(self, req: ProvisionRequest) -> None:
        if not req.ssh_host:
            raise RequestError("provider ssh needs ssh_host: the address of your machine", param="ssh_host")
        if not 0 < req.ssh_port < 65536:
            raise RequestError(f"ssh_port must be 1..65535, got {req.ssh_port}", param="ssh_port")
        if req.offer_id is not None:
            raise RequestError("provider ssh rents nothing: leave offer_id out", param="offer_id")
        if req.engine == "vllm" and req.gpu is None:
            raise RequestError("provider ssh with engine vllm needs gpu (the catalogue id of the machine's card) "
                               "to configure vLLM for it", param="gpu")
        host = f"[{req.ssh_host}]" if ":" in req.ssh_host else req.ssh_host
        busy = self.jobs.active_for_address(f"{req.ssh_user}@{host}:{req.ssh_port}")
        if busy is not None:
            raise RequestError(f"job {busy.id} is already working on {busy.address}", status=409, code="busy",
                               param="ssh_host")

    def _private_key(self) -> Path:
        s = self.settings
        if s.ssh_key_path is not None:
            path = s.ssh_key_path.expanduser()
        elif s.ssh_public_key_path is not None:
            path = s.ssh_public_key_path.expanduser().with_suffix("")
        else:
            path = Path("~/.ssh/id_ed25519").expanduser()
        if not path.is_file():
            raise RequestError(f"no SSH private key at {path} to log in to hosts with: create one with "
                               "`ssh-keygen -t ed25519` or set ssh_key_path", code="no_ssh_key", param="ssh_key_path")
        return path

    def _public_key(self) -> str:
        try:
            return ssh_public_key(self.settings)
        except (OSError, ValueError) as exc:
            raise RequestError(str(exc), code="no_ssh_key", param="ssh_public_key_path") from None

    def _check_playbook_variables(self) -> None:
        try:
            check_extra(self.settings.provision_variables, load_named("bootstrap"), load_named("teardown"))
        except VariablesError as exc:
            raise RequestError(str(exc), code="invalid_settings", param="provision_variables") from None

    async def teardown(self, host_id: str, *, reason: str | None = None) -> Job:
        try:
            host = self.fleet.host(host_id)
        except FleetError as exc:
            raise RequestError(str(exc), status=404, code="host_not_found") from None
        record = await self.records.get(host_id)
        if record is None:
            raise RequestError(f"host {host.name} ({host_id}) was not provisioned by tokenmill, so nothing says "
                               f"where its machine is: drain and remove it instead (POST /admin/hosts/{host_id}/drain, "
                               f"then /remove)", status=409, code="not_provisioned")
        if record.state == "removed":
            raise RequestError(f"host {host.name} ({host_id}) was torn down already", status=409, code="host_removed")
        busy = self.jobs.active_for_host(host_id)
        if busy is not None:
            raise RequestError(f"job {busy.id} ({busy.kind}) is still working on host {host.name}: wait for it to "
                               "end (a failed provisioning cleans up by itself)", status=409, code="busy")
        local = record.provider == "local"
        private_key = self._private_key() if not local else Path()  # a local host is stopped, not logged in to
        cloud: Provider | None = None
        if local:
            cloud = self.local_provider
        elif record.rented:
            try:
                cloud = provider(record.provider, self.settings, catalogue=self.catalogue)
            except ProviderError as exc:
                raise RequestError(f"cannot destroy the instance of {host.name}: {exc}", code="provider_unavailable",
                                   param="provider") from None
        job = self.jobs.new("teardown", record.provider, record.model, reason=reason)
        job.host_id, job.host_name = host.id, host.name
        job.instance_id, job.address = record.instance_id, record.address
        flow = TeardownJob(self, job, host, record, cloud, private_key, local_hosts=self.local_hosts if local else None)
        job.task = asyncio.create_task(flow.run(), name=f"teardown-{job.id}")
        job.task.add_done_callback(_retrieve)
        return job

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise RequestError(f"no job {job_id!r} (jobs are kept until the backend restarts)", status=404,
                               code="job_not_found")
        return job

    def cancel(self, job_id: str) -> Job:
        """Stop a job; a provisioning job then destroys what it rented, as when it fails."""
        job = self.job(job_id)
        if job.finished:
            raise RequestError(f"job {job_id} has ended ({job.state})", status=409, code="job_finished")
        if job.task is not None:
            job.task.cancel()
        return job

    # ------------------------------------------------------------------ host keys and runs
    async def pending_host_keys(self) -> list[HostKeyOut]:
        pending = await asyncio.to_thread(self.known_hosts.pending)
        return [HostKeyOut(p.host, p.port, p.key_type, p.fingerprint, p.seen_us) for p in pending]

    async def confirm_host_key(self, host: str, port: int, fingerprint: str) -> HostKeyOut:
        wanted = fingerprint.strip()
        pending = [p for p in await asyncio.to_thread(self.known_hosts.pending) if p.host == host and p.port == port]
        try:
            known = await asyncio.to_thread(self.known_hosts.confirm, host, port, wanted)
        except LookupError:
            if pending:
                shown = ", ".join(f"{p.key_type} {p.fingerprint}" for p in pending)
                raise RequestError(f"the fingerprint given, {wanted}, does not match the key {host}:{port} presented: "
                                   f"{shown}. Check the machine's own fingerprint before confirming",
                                   code="fingerprint_mismatch", param="fingerprint") from None
            raise RequestError(f"no host key of {host}:{port} waits for confirmation", status=404,
                               code="no_pending_key") from None
        except HostKeyChanged as exc:
            raise RequestError(str(exc), status=409, code="host_key_changed") from None
        self.events.add("host_key.confirmed", f"{host}:{port}", f"host key {known.key_type} {known.fingerprint} of "
                                                                f"{host}:{port} confirmed by the operator")
        self.key_waiters.notify()
        return HostKeyOut(known.host, known.port, known.key_type, known.fingerprint,
                          next((p.seen_us for p in pending if p.fingerprint == known.fingerprint), None))

    async def runs(self, *, limit: int = 50, host_id: str | None = None) -> list[RunOut]:
        return [RunOut(r.id, r.playbook, r.address, r.host_id, r.started_us, r.finished_us, r.outcome,
                       r.failed_step, r.error)
                for r in await self.runner.runs.recent(limit=limit, host_id=host_id)]


def _retrieve(task: asyncio.Task) -> None:
    # The jobs record their own failures; this only keeps asyncio from warning about a cancelled task.
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()
