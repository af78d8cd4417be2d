"""An async client for the admin API. Views only talk to the backend through this class, so
a test can hand the app a small fake with the same methods (see tests/console/fake_client.py)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from backend.wire.admin import (
    ClientOut,
    CreditOut,
    EventOut,
    HostOut,
    KeyIssued,
    KeyOut,
    MetricsOut,
    ModelMetricsOut,
    ModelOut,
    UsageOut,
)
from backend.wire.provision import HostKeyOut, JobOut, OffersOut, RunOut


class BackendUnavailable(Exception):
    """The backend did not answer (refused, reset, timed out). The header shows DISCONNECTED
    and the next refresh tries again."""


class AdminError(Exception):
    """The backend answered with an error envelope; `message` is meant for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class _Envelope(msgspec.Struct):
    error: dict[str, Any]


HOST_ACTIONS = ("drain", "resume", "remove")


def tls_verification(url: str) -> bool:
    """Certificates are verified for https. A plain-http address (the local backend, an SSH
    tunnel) never does TLS, so the CA bundle is not loaded for it: that costs ~0.1 s of start-up."""
    return not url.lower().startswith("http://")


class AdminClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # The token lives only in the header of this client: never in a widget, never in a log.
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                       headers={"Authorization": f"Bearer {token}"},
                                       verify=tls_verification(self.base_url))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, type_: Any, *, json: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        try:
            r = await self._http.request(method, "/admin" + path, json=json, params=params)
        except (httpx.TransportError, OSError) as exc:
            raise BackendUnavailable(f"{self.base_url}: {type(exc).__name__}") from None
        if r.status_code >= 400:
            raise AdminError(r.status_code, _error_message(r))
        try:
            return msgspec.json.decode(r.content, type=type_)
        except msgspec.DecodeError as exc:
            raise AdminError(r.status_code, f"unexpected answer from the backend: {exc}") from None

    # ------------------------------------------------------------------ clients and keys
    async def clients(self) -> list[ClientOut]:
        return await self._call("GET", "/clients", list[ClientOut])

    async def create_client(self, name: str) -> ClientOut:
        return await self._call("POST", "/clients", ClientOut, json={"name": name})

    async def grant_credit(self, client_id: str, amount_usd: str, idempotency_key: str,
                           source: str = "grant") -> CreditOut:
        body = {"amount_usd": amount_usd, "idempotency_key": idempotency_key, "source": source}
        return await self._call("POST", f"/clients/{client_id}/credit", CreditOut, json=body)

    async def keys(self, client_id: str) -> list[KeyOut]:
        return await self._call("GET", f"/clients/{client_id}/keys", list[KeyOut])

    async def issue_key(self, client_id: str, name: str = "") -> KeyIssued:
        return await self._call("POST", f"/clients/{client_id}/keys", KeyIssued, json={"name": name})

    async def revoke_key(self, key_id: str) -> KeyOut:
        return await self._call("POST", f"/keys/{key_id}/revoke", KeyOut)

    # ------------------------------------------------------------------ models and hosts
    async def models(self) -> list[ModelOut]:
        return await self._call("GET", "/models", list[ModelOut])

    async def set_model_enabled(self, model_id: str, enabled: bool) -> ModelOut:
        return await self._call("POST", f"/models/{model_id}/{'enable' if enabled else 'disable'}", ModelOut)

    async def hosts(self) -> list[HostOut]:
        return await self._call("GET", "/hosts", list[HostOut])

    async def host_action(self, host_id: str, action: str) -> HostOut:
        if action not in HOST_ACTIONS:
            raise ValueError(f"unknown host action {action!r}")
        return await self._call("POST", f"/hosts/{host_id}/{action}", HostOut)

    # ------------------------------------------------------------------ usage and events
    async def usage(self, group_by: str, since_us: int | None = None, until_us: int | None = None) -> list[UsageOut]:
        params: dict[str, Any] = {"group_by": group_by}
        if since_us is not None:
            params["since_us"] = since_us
        if until_us is not None:
            params["until_us"] = until_us
        return await self._call("GET", "/usage", list[UsageOut], params=params)

    async def metrics(self, rate_window_s: int = 600) -> MetricsOut:
        return await self._call("GET", "/metrics", MetricsOut, params={"rate_window_s": rate_window_s})

    async def model_metrics(self, model_id: str, rate_window_s: int = 600) -> ModelMetricsOut:
        return await self._call("GET", f"/models/{model_id}/metrics", ModelMetricsOut,
                                params={"rate_window_s": rate_window_s})

    async def events(self, after: int = 0) -> list[EventOut]:
        return await self._call("GET", "/events", list[EventOut], params={"after": after})


    # ------------------------------------------------------------------ provisioning
    async def offers(self, model: str, gpu: str | None = None, provider: str | None = None) -> OffersOut:
        params = {k: v for k, v in (("model", model), ("gpu", gpu), ("provider", provider)) if v is not None}
        return await self._call("GET", "/offers", OffersOut, params=params)

    async def provision(self, *, model: str, provider: str, gpu: str | None = None, offer_id: str | None = None,
                        name: str | None = None, engine: str = "vllm", ssh_host: str | None = None,
                        ssh_port: int = 22, ssh_user: str = "root") -> JobOut:
        """Start provisioning (202): follow the returned job with job(id, after)."""
        body: dict[str, Any] = {"model": model, "provider": provider, "engine": engine}
        optional = (("gpu", gpu), ("offer_id", offer_id), ("name", name), ("ssh_host", ssh_host))
        body.update({k: v for k, v in optional if v is not None})
        if ssh_host is not None:
            body.update(ssh_port=ssh_port, ssh_user=ssh_user)
        return await self._call("POST", "/provision", JobOut, json=body)

    async def jobs(self) -> list[JobOut]:
        return await self._call("GET", "/jobs", list[JobOut])

    async def job(self, job_id: str, after: int = 0) -> JobOut:
        """The job with its events after sequence number `after`."""
        return await self._call("GET", f"/jobs/{job_id}", JobOut, params={"after": after})

    async def cancel_job(self, job_id: str) -> JobOut:
        return await self._call("POST", f"/jobs/{job_id}/cancel", JobOut)

    async def teardown(self, host_id: str) -> JobOut:
        return await self._call("POST", f"/hosts/{host_id}/teardown", JobOut)

    async def pending_host_keys(self) -> list[HostKeyOut]:
        return await self._call("GET", "/host-keys/pending", list[HostKeyOut])

    async def confirm_host_key(self, host: str, port: int, fingerprint: str) -> HostKeyOut:
        return await self._call("POST", "/host-keys/confirm", HostKeyOut,
                                json={"host": host, "port": port, "fingerprint": fingerprint})

    async def provision_runs(self, limit: int = 50, host_id: str | None = None) -> list[RunOut]:
        params: dict[str, Any] = {"limit": limit}
        if host_id is not None:
            params["host_id"] = host_id
        return await self._call("GET", "/provision/runs", list[RunOut], params=params)


def _error_message(r: httpx.Response) -> str:
    try:
        env = msgspec.json.decode(r.content, type=_Envelope)
        return str(env.error.get("message") or env.error)
    except msgspec.DecodeError:
        return r.text[:200] or r.reason_phrase
