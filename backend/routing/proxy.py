"""The path of a paying request: auth, quote, hold, choose, forward, settle.

Forwarding (the transport, retries on another replica) is the Forwarder's (forwarder.py); the
split of a charge is the ledger's settlement policy. This module holds what makes a request paid.

Nothing here waits on the database except the settlement's durability, which is shared with
every other request committing at the same moment (group commit).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import msgspec

from backend.clients.licences import Licences
from backend.clients.service import ClientDirectory, KeyInfo
from backend.fleet.models import ModelBook
from backend.fleet.registry import Fleet, Replica
from backend.ledger import chart
from backend.ledger.errors import InsufficientFunds, LedgerError
from backend.ledger.service import Ledger, Usage
from backend.ledger.settlement_policy import channel_fee, host_share
from backend.metrics.live import LiveMetrics
from backend.metrics.uptime import UptimeWindow
from backend.money import format_usd
from backend.pricing.quote import Pricer, Quote
from backend.routing import validation
from backend.routing.context_fit import context_fit
from backend.routing.engine_errors import engine_error
from backend.routing.forwarder import UNREACHABLE, Forwarder, UpstreamFailed
from backend.routing.limits import RateLimiter
from backend.routing.transports import UpstreamResponse
from backend.runtime.bus import EventBus
from backend.wire.client_request import ClientRequest, TokenUsage, decode_any, decode_usage, encode
from backend.wire.errors import ApiError, error_bytes

log = logging.getLogger(__name__)

# Tokens a chat template may add around the messages (role markers, system preamble).
TEMPLATE_TOKENS = 256
_JSON = "application/json"
# An engine's answers that mean the request itself was wrong (a 404 for a model it was chosen to
# serve, or a 429, is the service's failure, not the client's).
CLIENT_FAULTS = frozenset((400, 413, 422))


@dataclass(slots=True)
class Reply:
    """What goes back to the client: a whole body, or a stream of SSE bytes."""

    status: int
    content_type: bytes
    request_id: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class MeteredError(ApiError):
    """An error answered after the request was metered (settled and counted): not counted again."""


@dataclass(slots=True)
class Call:
    """One client request in flight."""

    request_id: str  # also the key of its credit hold
    key: KeyInfo
    model: str
    quote: Quote
    held: int
    stream: bool
    wants_usage: bool
    started_us: int
    first_byte_us: int | None = None
    need: int = 0  # prompt + completion tokens a replica's max_model_len must hold (context_fit)
    kind: str = "chat"  # or "completions": an engine's refusal is put in the client's terms
    max_param: str = "max_tokens"  # the field the client bounded its output with


class Proxy:
    def __init__(self, *, ledger: Ledger, clients: ClientDirectory, fleet: Fleet, models: ModelBook,
                 pricer: Pricer, events: EventBus, limiter: RateLimiter, max_body_bytes: int,
                 forwarder: Forwarder, metrics: LiveMetrics | None = None, licences: Licences | None = None,
                 channel_fees: Mapping[str, int] | None = None, uptime: UptimeWindow | None = None) -> None:
        self.ledger, self.clients, self.fleet, self.models = ledger, clients, fleet, models
        self.metrics = metrics or LiveMetrics()
        # Channel (a client's: ClientDirectory.channel_of) -> (its fee in millionths of a charge, the
        # payable it is owed on): what a request through OpenRouter owes it, read once per settlement.
        self.channel_fees = {ch: (ppm, chart.channel_account(ch)) for ch, ppm in (channel_fees or {}).items() if ppm}
        self.uptime = uptime or UptimeWindow()  # each model's, as OpenRouter counts it
        self.pricer, self.events, self.limiter = pricer, events, limiter
        self.max_body_bytes = max_body_bytes
        self.forwarder = forwarder  # started and closed by its owner (Services)
        self.licences = licences  # None: no licence needs acknowledging (a bare proxy in tests)
        self._now_us = fleet.clock.now_us  # the services' clock, bound once: read per request
        # Called with the client's id after each hold it takes (or is refused): billing's auto-recharge
        # check, an O(1) read of memory. Set by Services.
        self.after_hold: Callable[[str], None] = _nothing

    # ---------------------------------------------------------------- checks
    def authenticate(self, authorization: str | None) -> KeyInfo:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer tm-...'.", code="missing_api_key")
        key = self.clients.authenticate(authorization[7:].strip())
        if key is None:
            raise ApiError(401, "Invalid API key.", code="invalid_api_key")
        if key.revoked:
            raise ApiError(401, f"API key {key.prefix}... was revoked.", code="revoked_api_key")
        return key

    def _parse(self, body: bytes, kind: str) -> ClientRequest:
        return validation.parse(body, kind)

    def refused(self, exc: ApiError) -> None:
        """Count a request answered with an error before it was metered (MeteredError: after)."""
        if not isinstance(exc, MeteredError):
            self.metrics.refused(client=exc.status < 500 and exc.code != "no_capacity", at_us=self._now_us())

    # ---------------------------------------------------------------- the request
    async def handle(self, kind: str, key: KeyInfo, body: bytes, request_id: str | None = None) -> Reply:
        """Serve one request for an authenticated key; raises ApiError for the client. `request_id`:
        what the client's reply says in x-request-id (minted here if not given)."""
        started = self._now_us()
        wait = self.limiter.allow(key.id)
        if wait:
            after = math.ceil(wait)  # whole seconds, as Retry-After says: never "retry in 0.0s"
            raise ApiError(429, f"Rate limit reached for this key; retry in {after} s.", code="rate_limited",
                           headers={"Retry-After": str(after)})
        req = self._parse(body, kind)  # the body's size was checked as it was read
        model = self.models.get(req.model)
        try:
            reply = await self._handle_model(kind, key, body, req, model, started, request_id)
        except ApiError as exc:
            if model is not None:  # only catalogue ids: the uptime's memory stays bounded
                self.uptime.answered(model.id, exc.status, self._now_us())
            raise
        if model is not None and reply.stream is None:  # a stream is counted where it ends (_relay)
            self.uptime.answered(model.id, reply.status, self._now_us())
        return reply

    async def _handle_model(self, kind: str, key: KeyInfo, body: bytes, req: ClientRequest, model,
                            started: int, request_id: str | None) -> Reply:
        if model is not None and not self.fleet.replicas(req.model) and self.fleet.recently_served(req.model):
            raise ApiError(429, f"No capacity for '{model.id}' right now (its hosts are restarting); retry shortly.",
                           code="no_capacity", headers={"Retry-After": "5"})
        if model is not None and not self.fleet.replicas(req.model) and self.fleet.starting():
            # Its hosts may not have reported since this process started: not found would be a lie
            # the SDKs do not retry.
            raise ApiError(503, f"'{model.id}' is not available yet: the router has just started and is waiting "
                                f"for its hosts to report; retry in 2s.", code="fleet_starting",
                           headers={"Retry-After": "2"})
        if model is None or not self.fleet.replicas(req.model):
            raise ApiError(404, f"The model '{req.model}' does not exist or is not available.",
                           code="model_not_found", param="model")
        if self.licences is not None:
            self.licences.check(key.client_id, model)  # 403 licence_not_accepted: two lookups in memory
        fit = context_fit(model, self.fleet.max_model_len(model.id), len(body),
                          req.max_completion_tokens or req.max_tokens,
                          "max_completion_tokens" if req.max_completion_tokens else "max_tokens",
                          "messages" if kind == "chat" else "prompt")
        max_out = fit.max_out
        first = self.fleet.choose(model.id, need=fit.likely) or self.fleet.choose(model.id, need=fit.least)
        if first is None:
            raise ApiError(429, f"No capacity for '{model.id}' right now; retry shortly.", code="no_capacity",
                           headers={"Retry-After": "1"})

        quote = self.pricer.quote(model)
        # Worst case: every body byte a prompt token (a token is at least one byte), plus the
        # chat template, plus every completion token the request allows.
        held = quote.cost(len(body) + TEMPLATE_TOKENS, max_out * req.n)
        request_id = request_id or self.ledger.mint_key("req")
        try:
            self.ledger.reserve(chart.client_account(key.client_id), chart.REVENUE, held, code="usage",
                                ref=request_id, key=request_id, lazy=True)
        except InsufficientFunds as exc:
            raise ApiError(402, f"Insufficient credit: this request needs up to {format_usd(held)} "
                                f"(at {model.id}'s current price) and the balance available is "
                                f"{format_usd(exc.available)}. Add credit and retry.",
                           code="insufficient_credit") from None
        except LedgerError as exc:
            raise ApiError(503, f"Metering is unavailable: {exc}", code="ledger_unavailable") from None
        finally:
            self.after_hold(key.client_id)

        wants_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
        call = Call(request_id, key, model.id, quote, held, req.stream, wants_usage, started, need=fit.least,
                    kind=kind, max_param="max_completion_tokens" if req.max_completion_tokens else "max_tokens")
        if req.stream and not wants_usage:
            # Always ask the engine for usage; what the client did not ask for is removed below.
            doc = decode_any(body)
            doc["stream_options"] = {**(doc.get("stream_options") or {}), "include_usage": True}
            body = encode(doc)
        path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        try:
            rep, resp, payload = await self.forwarder.open(call.model, path, body, first, stream=call.stream,
                                                           need=call.need)
            call.first_byte_us = self._now_us()
        except UpstreamFailed as exc:
            self._settle(call, None, None, status="failed")
            raise MeteredError(exc.status, str(exc), code="upstream_failed") from None
        except BaseException:
            self._settle(call, None, None, status="failed")
            raise
        if not req.stream or resp.status != 200:
            return await self._finish_unary(call, rep, resp, payload)
        return Reply(200, b"text/event-stream", request_id, stream=self._relay(call, rep, resp, payload))

    async def _finish_unary(self, call: Call, rep: Replica, resp: UpstreamResponse, body: bytes) -> Reply:
        try:
            usage = None
            if resp.status == 200:
                try:
                    usage = decode_usage(body).usage
                except msgspec.MsgspecError:
                    usage = None
                if usage is None:
                    self.events.add("upstream.no_usage", rep.host.id,
                                    f"{call.model} on {rep.host.name} answered without usage; not charged", "error")
            status = "ok" if resp.status == 200 and usage is not None else "failed"
            self.fleet.succeeded(rep)
            try:
                await self._settle(call, rep, usage, status=status, rejected=resp.status in CLIENT_FAULTS)
            except LedgerError as exc:
                raise MeteredError(503, f"Metering is unavailable, the request was not charged: {exc}",
                                   code="ledger_unavailable") from None
            if resp.status != 200:  # the engine's refusal, in OpenAI's envelope and the client's terms
                refusal = engine_error(resp.status, body, kind=call.kind, model=call.model, max_param=call.max_param)
                return Reply(refusal.status, _JSON.encode(), call.request_id, refusal.body)
            return Reply(resp.status, resp.headers.get("Content-Type", _JSON).encode(), call.request_id, body)
        finally:
            rep.outstanding -= 1
            resp.release()

    async def _relay(self, call: Call, rep: Replica, resp: UpstreamResponse,
                     first: bytes) -> AsyncIterator[bytes]:
        """Pass the engine's SSE bytes through; read usage from the stream's tail; hold back
        the final [DONE] until the settlement is durable."""
        buf = b""
        delivered = 0
        usage = None
        done = False
        outcome = "cancelled"  # unless we reach the end, the client went away
        chunk = first
        try:
            try:
                while chunk:
                    buf += chunk
                    *events, buf = buf.split(b"\n\n")
                    out = []
                    for ev in events:
                        if ev.startswith(b"data: [DONE]"):
                            done = True
                        elif b'"choices":[]' in ev or b'"choices": []' in ev:
                            try:
                                usage = decode_usage(ev[ev.index(b"{"):]).usage or usage
                            except (ValueError, msgspec.MsgspecError):
                                pass
                            if call.wants_usage:
                                out.append(ev)
                        elif ev:
                            delivered += 1
                            out.append(ev)
                    if out:
                        yield b"\n\n".join(out) + b"\n\n"
                    chunk = await resp.content.readany()
                cut = None if done else "the engine closed the stream early"
            except TimeoutError:
                cut = "the engine stopped sending"
            except UNREACHABLE as exc:
                cut = f"the engine connection broke ({type(exc).__name__})"
            if cut is None:
                outcome = "ok" if usage is not None else "failed"
                self.uptime.record(call.model, False, self._now_us())  # the client saw a whole answer
                self.fleet.succeeded(rep)
                await self._settle(call, rep, usage, status=outcome)
                yield b"data: [DONE]\n\n"
            else:
                outcome = "failed"
                self.uptime.record(call.model, True, self._now_us())  # broke after the first byte
                self.fleet.failed(rep, cut)
                self._settle(call, rep, None, status="failed")
                msg = f"{call.model}: {cut} after {delivered} chunks; this request is not charged."
                yield b"data: " + error_bytes(502, msg, "upstream_disconnected") + b"\n\n"
        finally:
            rep.outstanding -= 1
            resp.close()  # if the client left, this cancels the engine's work too
            if outcome == "cancelled":
                if usage is None:
                    # Charged for what was delivered: the chunks counted (the first carries
                    # only the role), no prompt tokens since the engine did not report them.
                    usage = TokenUsage(0, max(delivered - 1, 0))
                self._settle(call, rep, usage, status="cancelled")

    def _settle(self, call: Call, rep: Replica | None, usage, *, status: str, rejected: bool = False) -> asyncio.Future:
        """Post what the request cost (0 unless it succeeded or the client cancelled), pay the
        host its share, record the usage event. Returns the durability future. `rejected`: the
        engine refused the request as the client's error (a "failed" usage event, not charged,
        counted in the live metrics as a client error, not a failure)."""
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        charged = min(call.quote.cost(prompt, completion), call.held) if status != "failed" else 0
        host = rep.host if rep is not None else None
        share = host_share(charged, host.payout_share_bps) if host is not None else 0
        fee, fee_account = 0, None
        terms = self.channel_fees.get(self.clients.channel_of(call.key.client_id)) if charged else None
        if terms is not None:
            fee, fee_account = channel_fee(charged, terms[0]), terms[1]
        record = Usage(request_id=call.request_id, client_id=call.key.client_id, key_id=call.key.id,
                       model=call.model, host_id=host.id if host else None, prompt_tokens=prompt,
                       completion_tokens=completion, price_prompt_per_mtok=call.quote.prompt_per_mtok,
                       price_completion_per_mtok=call.quote.completion_per_mtok, started_us=call.started_us,
                       first_byte_us=call.first_byte_us, finished_us=self._now_us(), status=status)
        try:
            _, fut = self.ledger.settle_nowait(call.request_id, charged=charged, usage=record, host_share=share,
                                               host_account=host.payable_account if share else None, fee=fee,
                                               fee_account=fee_account if fee else None)
            self.metrics.record(model=call.model, status="rejected" if rejected else status, prompt_tokens=prompt,
                                completion_tokens=completion, charged=charged, host_share=share, fee=fee,
                                started_us=call.started_us, first_byte_us=call.first_byte_us,
                                finished_us=record.finished_us)
        except LedgerError as exc:
            self.events.add("ledger.error", call.request_id, f"settlement failed: {exc}", "error")
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(exc)
        fut.add_done_callback(_logged)
        return fut


def _nothing(_client_id: str) -> None:
    pass


def _logged(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("settlement did not become durable: %s", fut.exception())
