"""The typed client of the admin API: the console's views and the CLI's commands (`tokenmill offers |
provision | teardown | host-keys`) both talk to the backend through it. Bodies are the wire package's
request Structs and answers are decoded into its response Structs (msgspec), so a shape changed on
one side shows up as a decode error here, not as a KeyError in a view.

AdminClient is async (the console runs on an event loop); BlockingAdminClient runs the same
client on a private loop for a program that has none (the CLI): one request path, two callers.
The console is allowed to import it (the wire package is its contract with the backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from backend.wire.admin import (
    ClientOut,
    CreateClient,
    CreditOut,
    EventOut,
    EventsMissed,
    GrantCredit,
    HostOut,
    IssueKey,
    KeyIssued,
    KeyOut,
    LoopOut,
    MetricsOut,
    ModelMetricsOut,
    ModelOut,
    SetClientChannel,
    StatusOut,
    UsageOut,
)
from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, SetModelScaling
from backend.wire.billing_admin import BillingOut, ModelDayProfitOut, PaymentRowOut
from backend.wire.errors import Envelope
from backend.wire.invoices import InvoiceOut, InvoiceSummaryOut, InvoicingRunOut
from backend.wire.licences import LicenceAcceptanceOut, LicencePolicyOut, ModelLicenceOut, MyLicences, SetLicencePolicy
from backend.wire.payouts import HostPayoutOut, MarkPaid, PayoutOut, PayoutRunOut, SetPayoutSettings
from backend.wire.pricing import ModelPricingOut, PriceHistoryOut, PricingOut, SetModelPricing
from backend.wire.projections import ProjectionsOut
from backend.wire.provision import ConfirmHostKey, HostKeyOut, JobOut, OffersOut, ProvisionRequest, RunOut

T = TypeVar("T")

HOST_ACTIONS = ("drain", "resume", "remove")

_encode = msgspec.json.Encoder().encode
STREAM_SILENCE_S = 45.0
_STREAMED: dict[str, type] = {"event": EventOut, "missed": EventsMissed}
_JSON = {"Content-Type": "application/json"}


class BackendUnavailable(Exception):
    """The backend did not answer (refused, reset, timed out). The console's header shows
    DISCONNECTED and the next refresh tries again; the CLI says how to start one."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


class AdminError(Exception):
    """The backend answered with an error envelope; `message` is meant for the operator, `code`
    is the envelope's machine-readable code when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.code = status, message, code


def tls_verification(url: str) -> bool:
    """Certificates are verified for https. A plain-http address (the local backend, an SSH
    tunnel) never does TLS, so the CA bundle is not loaded for it: that costs ~0.1 s of start-up."""
    return not url.lower().startswith("http://")


class AdminClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # The token lives only in the header of this client: never in a widget, a log or a URL.
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                       headers={"Authorization": f"Bearer {token}"},
                                       verify=tls_verification(self.base_url))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, type_: Any, *, body: msgspec.Struct | None = None,
                    params: dict[str, Any] | None = None) -> Any:
        content = None if body is None else _encode(body)
        try:
            r = await self._http.request(method, "/admin" + path, content=content, params=params,
                                         headers=_JSON if body is not None else None)
        except (httpx.TransportError, OSError) as exc:
            raise BackendUnavailable(self.base_url, type(exc).__name__) from None
        if r.status_code >= 400:
            raise _admin_error(r)
        try:
            return msgspec.json.decode(r.content, type=type_)
        except msgspec.DecodeError as exc:  # ValidationError too: the answer is not the shape expected
            raise AdminError(r.status_code, f"unexpected answer from the backend: {exc}") from None

    # ------------------------------------------------------------------ clients and keys
    async def clients(self) -> list[ClientOut]:
        return await self._call("GET", "/clients", list[ClientOut])

    async def create_client(self, name: str, channel: Literal["direct", "openrouter"] = "direct") -> ClientOut:
        return await self._call("POST", "/clients", ClientOut, body=CreateClient(name=name, channel=channel))

    async def set_client_channel(self, client_id: str, channel: Literal["direct", "openrouter"]) -> ClientOut:
        return await self._call("POST", f"/clients/{client_id}/channel", ClientOut,
                                body=SetClientChannel(channel=channel))

    async def grant_credit(self, client_id: str, amount_usd: str, idempotency_key: str,
                           source: Literal["grant", "payment"] = "grant") -> CreditOut:
        body = GrantCredit(amount_usd=amount_usd, idempotency_key=idempotency_key, source=source)
        return await self._call("POST", f"/clients/{client_id}/credit", CreditOut, body=body)

    async def keys(self, client_id: str) -> list[KeyOut]:
        return await self._call("GET", f"/clients/{client_id}/keys", list[KeyOut])

    async def issue_key(self, client_id: str, name: str = "") -> KeyIssued:
        return await self._call("POST", f"/clients/{client_id}/keys", KeyIssued, body=IssueKey(name=name))

    async def revoke_key(self, key_id: str) -> KeyOut:
        return await self._call("POST", f"/keys/{key_id}/revoke", KeyOut)

    # ------------------------------------------------------------------ models and hosts
    async def models(self) -> list[ModelOut]:
        return await self._call("GET", "/models", list[ModelOut])

    async def set_model_enabled(self, model_id: str, enabled: bool) -> ModelOut:
        return await self._call("POST", f"/models/{model_id}/{'enable' if enabled else 'disable'}", ModelOut)

    async def hosts(self) -> list[HostOut]:
        return await self._call("GET", "/hosts", list[HostOut])

    # ------------------------------------------------------------------ licences
    async def model_licence(self, model_id: str) -> ModelLicenceOut:
        """The model's licence, whether clients must acknowledge it, and how many have."""
        return await self._call("GET", f"/models/{model_id}/licence", ModelLicenceOut)

    async def set_licence_policy(self, model_id: str, requires_acceptance: bool) -> LicencePolicyOut:
        """Whether clients must acknowledge the model's licence before using it (the operator's word)."""
        return await self._call("PUT", f"/models/{model_id}/licence", LicencePolicyOut,
                                body=SetLicencePolicy(requires_acceptance=requires_acceptance))

    async def client_licences(self, client_id: str) -> MyLicences:
        """The licences a client accepted (oldest first) and those it must still accept."""
        return await self._call("GET", f"/clients/{client_id}/licences", MyLicences)

    async def accept_licence_for(self, client_id: str, model_id: str) -> LicenceAcceptanceOut:
        """Accept the model's current licence on the client's behalf (recorded as by the operator)."""
        return await self._call("POST", f"/clients/{client_id}/licences/{model_id}", LicenceAcceptanceOut)

    # ------------------------------------------------------------------ pricing and autoscaling
    async def pricing(self) -> PricingOut:
        return await self._call("GET", "/pricing", PricingOut)

    async def model_prices(self, model_id: str, from_us: int | None = None,
                           to_us: int | None = None) -> PriceHistoryOut:
        params = {k: v for k, v in (("from", from_us), ("to", to_us)) if v is not None}
        return await self._call("GET", f"/models/{model_id}/prices", PriceHistoryOut, params=params)

    async def set_model_pricing(self, model_id: str, change: SetModelPricing) -> ModelPricingOut:
        return await self._call("PUT", f"/models/{model_id}/pricing", ModelPricingOut, body=change)

    async def autoscaler(self) -> AutoscalerOut:
        return await self._call("GET", "/autoscaler", AutoscalerOut)

    async def set_model_scaling(self, model_id: str, change: SetModelScaling) -> ModelScalingOut:
        return await self._call("PUT", f"/models/{model_id}/scaling", ModelScalingOut, body=change)

    async def host_action(self, host_id: str, action: str) -> HostOut:
        if action not in HOST_ACTIONS:
            raise ValueError(f"unknown host action {action!r}")
        return await self._call("POST", f"/hosts/{host_id}/{action}", HostOut)

    # ------------------------------------------------------------------ usage, metrics and events
    async def usage(self, group_by: str, since_us: int | None = None, until_us: int | None = None) -> list[UsageOut]:
        params: dict[str, Any] = {"group_by": group_by}
        if since_us is not None:
            params["since_us"] = since_us
        if until_us is not None:
            params["until_us"] = until_us
        return await self._call("GET", "/usage", list[UsageOut], params=params)

    async def metrics(self, rate_window_s: int = 600) -> MetricsOut:
        return await self._call("GET", "/metrics", MetricsOut, params={"rate_window_s": rate_window_s})

    async def billing(self) -> BillingOut:
        """Today's Stripe payments, refunds and auto-recharges, this month's invoices, each client's
        recharge settings and balance."""
        return await self._call("GET", "/billing", BillingOut)

    async def client_payments(self, client_id: str, limit: int = 100) -> list[PaymentRowOut]:
        """A client's Stripe payments, newest first."""
        return await self._call("GET", f"/billing/clients/{client_id}/payments", list[PaymentRowOut],
                                params={"limit": limit})

    async def profit(self, since_us: int | None = None, until_us: int | None = None) -> list[ModelDayProfitOut]:
        """Revenue, host shares, GPU cost and profit per model and UTC day, from the ledger (default: today)."""
        params = {k: v for k, v in (("since_us", since_us), ("until_us", until_us)) if v is not None}
        return await self._call("GET", "/profit", list[ModelDayProfitOut], params=params)

    async def projections(self) -> ProjectionsOut:
        """Today's and this month's money so far and projected, break-even per model, the target."""
        return await self._call("GET", "/projections", ProjectionsOut)

    async def model_metrics(self, model_id: str, rate_window_s: int = 600) -> ModelMetricsOut:
        return await self._call("GET", f"/models/{model_id}/metrics", ModelMetricsOut,
                                params={"rate_window_s": rate_window_s})

    async def events(self, after: int = 0) -> list[EventOut]:
        return await self._call("GET", "/events", list[EventOut], params={"after": after})

    async def status(self) -> StatusOut:
        """The backend's version and when it started (a new started_us: it restarted)."""
        return await self._call("GET", "/status", StatusOut)

    async def loops(self) -> list[LoopOut]:
        """The background loops the backend's supervisor runs, in start order."""
        return await self._call("GET", "/loops", list[LoopOut])

    async def event_stream(self, after: int = 0) -> AsyncIterator[EventOut | EventsMissed]:
        """GET /events/stream: the events after `after`, then each one as it happens, until the
        backend ends the stream (the caller reconnects with the last seq it saw). Server-Sent
        Events, read here: `event:` names the shape of each `data:` line."""
        # The backend sends a keepalive every 15 s: a longer silence is a dead connection.
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_SILENCE_S)
        try:
            async with self._http.stream("GET", "/admin/events/stream", params={"after": after},
                                         timeout=timeout) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise _admin_error(r)
                kind, data = "message", []
                async for line in r.aiter_lines():
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            kind = value
                        elif name == "data":
                            data.append(value)
                        continue  # ":" comments (keepalives), id and retry lines
                    if data and kind in _STREAMED:  # a blank line ends a message
                        try:
                            yield msgspec.json.decode("\n".join(data), type=_STREAMED[kind])
                        except msgspec.DecodeError as exc:
                            raise AdminError(r.status_code, f"unexpected event from the backend: {exc}") from None
                    kind, data = "message", []
        except (httpx.TransportError, OSError) as exc:
            raise BackendUnavailable(self.base_url, type(exc).__name__) from None

    # ------------------------------------------------------------------ provisioning
    async def offers(self, model: str, gpu: str | None = None, provider: str | None = None) -> OffersOut:
        params = {k: v for k, v in (("model", model), ("gpu", gpu), ("provider", provider)) if v is not None}
        return await self._call("GET", "/offers", OffersOut, params=params)

    async def provision(self, *, model: str, provider: str, gpu: str | None = None, offer_id: str | None = None,
                        name: str | None = None, engine: Literal["vllm", "sim"] = "vllm",
                        ssh_host: str | None = None, ssh_port: int = 22, ssh_user: str = "root",
                        gpu_count: int = 1) -> JobOut:
        """Start provisioning (202): follow the returned job with job(id, after). The ssh_* fields
        and gpu_count are for provider "ssh" (a machine of the operator's)."""
        body = ProvisionRequest(model=model, provider=provider, gpu=gpu, offer_id=offer_id, name=name,
                                engine=engine, ssh_host=ssh_host, ssh_port=ssh_port, ssh_user=ssh_user,
                                gpu_count=gpu_count)
        return await self._call("POST", "/provision", JobOut, body=body)

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
        body = ConfirmHostKey(host=host, port=port, fingerprint=fingerprint)
        return await self._call("POST", "/host-keys/confirm", HostKeyOut, body=body)

    async def provision_runs(self, limit: int = 50, host_id: str | None = None) -> list[RunOut]:
        params: dict[str, Any] = {"limit": limit}
        if host_id is not None:
            params["host_id"] = host_id
        return await self._call("GET", "/provision/runs", list[RunOut], params=params)

    # ------------------------------------------------------------------ invoices
    async def generate_invoices(self, date: str | None = None,
                                dry_run: Literal["all", "validate", "none"] = "none") -> InvoicingRunOut:
        """Invoice the month `date` falls in (YYYY-MM or an ISO date; None: the previous month)."""
        params = {"dry_run": dry_run} | ({"date": date} if date else {})
        return await self._call("POST", "/invoicing/generate", InvoicingRunOut, params=params)

    async def invoices(self, month: str | None = None, client_id: str | None = None) -> list[InvoiceSummaryOut]:
        params = {k: v for k, v in (("month", month), ("client_id", client_id)) if v}
        return await self._call("GET", "/invoices", list[InvoiceSummaryOut], params=params)

    async def invoice(self, number: str) -> InvoiceOut:
        return await self._call("GET", f"/invoices/{number}", InvoiceOut)

    async def invoice_document(self, number: str, fmt: Literal["pdf", "csv"]) -> bytes:
        """The invoice's PDF or CSV, as the backend renders it."""
        try:
            r = await self._http.get(f"/admin/invoices/{number}.{fmt}")
        except (httpx.TransportError, OSError) as exc:
            raise BackendUnavailable(self.base_url, type(exc).__name__) from None
        if r.status_code >= 400:
            raise _admin_error(r)
        return r.content

    # ------------------------------------------------------------------ host payouts
    async def payouts(self, host_id: str | None = None, state: str | None = None,
                      limit: int = 100) -> list[PayoutOut]:
        params: dict[str, Any] = {"limit": limit} | {k: v for k, v in (("host_id", host_id), ("state", state)) if v}
        return await self._call("GET", "/payouts", list[PayoutOut], params=params)

    async def run_payouts(self, host_id: str | None = None, ignore_threshold: bool = False) -> PayoutRunOut:
        params: dict[str, Any] = ({"host_id": host_id} if host_id else {}) | \
            ({"ignore_threshold": "true"} if ignore_threshold else {})
        return await self._call("POST", "/payouts/run", PayoutRunOut, params=params)

    async def mark_payout_paid(self, payout_id: str, reference: str) -> PayoutOut:
        return await self._call("POST", f"/payouts/{payout_id}/mark-paid", PayoutOut, body=MarkPaid(reference))

    async def cancel_payout(self, payout_id: str) -> PayoutOut:
        return await self._call("POST", f"/payouts/{payout_id}/cancel", PayoutOut)

    async def host_payout(self, host_id: str) -> HostPayoutOut:
        return await self._call("GET", f"/hosts/{host_id}/payout", HostPayoutOut)

    async def set_host_payout(self, host_id: str, change: SetPayoutSettings) -> HostPayoutOut:
        return await self._call("PUT", f"/hosts/{host_id}/payout", HostPayoutOut, body=change)


class BlockingAdminClient:
    """The AdminClient for a program without an event loop: `admin.run(admin.api.offers(model))`.
    Every call runs on one private loop (asyncio.Runner), so the connection pool is reused between
    calls; Ctrl-C during a call raises KeyboardInterrupt as in any blocking code."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self._runner = asyncio.Runner()
        self.api = AdminClient(base_url, token, timeout_s=timeout_s)

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(call)

    def close(self) -> None:
        try:
            self._runner.run(self.api.aclose())
        finally:
            self._runner.close()


def _admin_error(r: httpx.Response) -> AdminError:
    try:
        err = msgspec.json.decode(r.content, type=Envelope).error
    except msgspec.DecodeError:
        # Not the backend's envelope (a proxy in front of it, a wrong address): show what came.
        return AdminError(r.status_code, r.text[:200] or r.reason_phrase)
    return AdminError(r.status_code, err.message, err.code)
