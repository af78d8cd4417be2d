"""The provisioning part of the admin API (/admin): offers, provisioning and teardown jobs, host
keys awaiting confirmation, and the record of playbook runs. Thin handlers over the Provisioner
(backend/provision/service.py); shapes in provision_wire.py."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, ADMIN_BODY, ADMIN_ID, errors
from backend.provision.offers import CLOUDS
from backend.provision.service import Provisioner, RequestError
from backend.wire.errors import ApiError
from backend.wire.provision import ConfirmHostKey, HostKeyOut, JobOut, OffersOut, ProvisionRequest, RunOut

MAX_RUNS = 500


def _provisioner(request: Request) -> Provisioner:
    return request.app.state.services.provisioner


def _refused(exc: RequestError) -> ApiError:
    return ApiError(exc.status, exc.message, code=exc.code, param=exc.param)


class ProvisionController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["provisioning"]
    security = [{"admin_token": []}]

    @get("/offers", responses=errors(*ADMIN, 400, 404))
    async def offers(self, request: Request, model: FromQuery[str], gpu: FromQuery[str | None] = None,
                     provider: Annotated[str | None, QueryParameter(
                         description="only this cloud", schema_extra={"enum": list(CLOUDS)})] = None) -> OffersOut:
        """Machines every cloud with an API key would rent now that fit `model`, cheapest first, with
        what each would earn per hour at the model's current demand; clouds that could not be asked
        are listed in `unavailable` with the reason."""
        try:
            return await _provisioner(request).offers(model, gpu=gpu, only=provider)
        except RequestError as exc:
            raise _refused(exc) from None

    @post("/provision", status_code=202, responses=errors(*ADMIN_BODY, 404, 409))
    async def provision(self, request: Request, data: JSONBody[ProvisionRequest]) -> JobOut:
        """Start a job that turns a machine into a serving host; follow it with GET /admin/jobs/{id}."""
        try:
            job = await _provisioner(request).provision(data)
        except RequestError as exc:
            raise _refused(exc) from None
        return job.out(after=0)

    @get("/jobs", responses=errors(*ADMIN))
    async def jobs(self, request: Request) -> list[JobOut]:
        """Every job this backend ran since it started, oldest first, without their events."""
        return [j.out() for j in _provisioner(request).jobs.all()]

    @get("/jobs/{job_id:str}", responses=errors(*ADMIN, 400, 404))
    async def job(self, request: Request, job_id: FromPath[str],
                  after: Annotated[int, QueryParameter(ge=0)] = 0) -> JobOut:
        """One job, with its events after sequence number `after` (all kept ones when 0)."""
        try:
            return _provisioner(request).job(job_id).out(after=after)
        except RequestError as exc:
            raise _refused(exc) from None

    @post("/jobs/{job_id:str}/cancel", status_code=200, responses=errors(*ADMIN_ID, 409))
    async def cancel_job(self, request: Request, job_id: FromPath[str]) -> JobOut:
        """Stop a running job; a provisioning job then destroys what it rented and removes the host."""
        try:
            return _provisioner(request).cancel(job_id).out()
        except RequestError as exc:
            raise _refused(exc) from None

    @post("/hosts/{host_id:str}/teardown", status_code=202, responses=errors(*ADMIN, 400, 404, 409))
    async def teardown(self, request: Request, host_id: FromPath[str]) -> JobOut:
        """Start a job that drains a provisioned host, removes its agent, destroys its rented instance
        and removes it from the fleet."""
        try:
            job = await _provisioner(request).teardown(host_id)
        except RequestError as exc:
            raise _refused(exc) from None
        return job.out(after=0)

    @get("/host-keys/pending", responses=errors(*ADMIN))
    async def pending_host_keys(self, request: Request) -> list[HostKeyOut]:
        """Host keys that were refused as unknown and wait for the operator's confirmation."""
        return await _provisioner(request).pending_host_keys()

    @post("/host-keys/confirm", status_code=200, responses=errors(*ADMIN_BODY, 404, 409))
    async def confirm_host_key(self, request: Request, data: JSONBody[ConfirmHostKey]) -> HostKeyOut:
        """Trust the key host:port presented, if it has this fingerprint; jobs waiting for it go on."""
        try:
            return await _provisioner(request).confirm_host_key(data.host, data.port, data.fingerprint)
        except RequestError as exc:
            raise _refused(exc) from None

    @get("/provision/runs", responses=errors(*ADMIN, 400))
    async def runs(self, request: Request, limit: Annotated[int, QueryParameter(ge=1, le=MAX_RUNS)] = 50,
                   host_id: FromQuery[str | None] = None) -> list[RunOut]:
        """Recorded playbook runs, newest first."""
        return await _provisioner(request).runs(limit=limit, host_id=host_id)
