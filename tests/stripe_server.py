"""A small Stripe on loopback: real HTTP answering Stripe's documented shapes for what tokenmill
calls, so the real `stripe` library runs its real code path against it (base_addresses["api"]).

It keeps customers, Checkout sessions, PaymentIntents (listed by customer), charges, refunds, disputes
and transfers to connected accounts (host payouts; listed by transfer_group) in memory;
honours Idempotency-Key (the same key on the same path answers what it answered the first time,
until `forget_idempotency_keys()`: Stripe keeps them for 24 hours); fakes Stripe in trouble (503s,
and 500s whose result is indeterminate: the charge may have been made, the 500 is replayed);
declines an off-session charge when told to (Stripe's card_error JSON with HTTP 402); and sends
webhook events to the router signed with Stripe's algorithm (t=..., v1=HMAC-SHA256(secret,
f"{t}.{payload}")). Events are queued, not sent, until the test says `deliver()`, so a test decides
their order (and can send them out of order, twice, or at once).

    async with running_stripe() as stripe_srv: ...   # or the `stripe_server` fixture
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
import pytest
from aiohttp import web

API_KEY = "sk_test_tokenmill_local"
WEBHOOK_SECRET = "whsec_tokenmill_local_secret"
API_VERSION = "2026-10-28.endive"

DECLINES = {
    "card_declined": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "authentication_required": ("authentication_required", "authentication_required",
                                "Your card was declined. This transaction requires authentication."),
}


def _now() -> int:
    return int(time.time())


def _new(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_form(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (`metadata[a]=1`, `line_items[0][quantity]=1`) back into objects."""
    out: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(out)


def _lists(node):
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def _error(status: int, kind: str, message: str, **extra) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, **extra}}, status=status)


def _no_retry(status: int) -> dict[str, str]:
    """Stripe's header on a 5xx that asking again cannot change (the library then does not)."""
    return {"Stripe-Should-Retry": "false"} if status >= 500 else {}


def _trouble(status: int) -> web.Response:
    return web.json_response({"error": {"type": "api_error", "message": "Stripe is having trouble."}},
                             status=status, headers=_no_retry(status))


def _created_in(created: int, bounds: object) -> bool:
    """Stripe's `created` filter: a timestamp, or created[gte|gt|lte|lt]."""
    if bounds is None:
        return True
    if not isinstance(bounds, dict):
        return created == int(str(bounds))
    tests = {"gte": created.__ge__, "gt": created.__gt__, "lte": created.__le__, "lt": created.__lt__}
    return all(tests[op](int(v)) for op, v in bounds.items() if op in tests)


def _page(url: str, data: list[dict], p: dict) -> dict:
    """One page of a Stripe list, newest first: `limit` (10 by default) after `starting_after`."""
    data = sorted(reversed(data), key=lambda o: o["created"], reverse=True)
    if p.get("starting_after"):
        ids = [o["id"] for o in data]
        data = data[ids.index(p["starting_after"]) + 1:] if p["starting_after"] in ids else []
    limit = int(p.get("limit") or 10)
    return {"object": "list", "url": url, "has_more": len(data) > limit, "data": copy.deepcopy(data[:limit])}


@dataclass
class StripeServer:
    api_key: str = API_KEY
    webhook_secret: str = WEBHOOK_SECRET
    url: str = ""
    webhook_url: str = ""  # the router's POST /v1/billing/webhook
    customers: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    intents: dict[str, dict] = field(default_factory=dict)
    charges: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    disputes: dict[str, dict] = field(default_factory=dict)
    saved_cards: dict[str, set[str]] = field(default_factory=dict)  # customer -> payment methods
    # (method, path, params, Idempotency-Key) of every API call, in order
    calls: list[tuple[str, str, dict, str | None]] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)  # events waiting for deliver()
    declines: deque[str] = field(default_factory=deque)  # DECLINES keys for the next off-session charges
    # When set, POST /v1/payment_intents waits for it before answering (a slow Stripe, a crash mid-call).
    intents_gate: asyncio.Event | None = None
    # How many of the next POST /v1/payment_intents answer 503 (Stripe in trouble, nothing done or saved).
    unavailable: int = 0
    # How many of the next POST /v1/payment_intents make the charge (its events queued) but answer 500,
    # the answer kept for the Idempotency-Key (Stripe replays it): an indeterminate error.
    intents_lost_answers: int = 0
    # How many of the next POST /v1/payment_intents answer 500 having made nothing, kept for the key too.
    intents_errors: int = 0
    # How many of the next GET /v1/payment_intents (the list) answer 503.
    intents_list_unavailable: int = 0
    transfers: dict[str, dict] = field(default_factory=dict)  # money sent to connected accounts
    # How many of the next POST /v1/transfers answer 503 (nothing done or saved).
    transfers_unavailable: int = 0
    # Connected accounts Stripe does not know: a transfer to one is refused (400, resource_missing).
    unknown_accounts: set[str] = field(default_factory=set)
    # When set, POST /v1/transfers makes the transfer (and keeps its answer for its Idempotency-Key),
    # then waits for it before answering: the caller can "crash" after Stripe did the transfer.
    transfers_gate: asyncio.Event | None = None
    _idempotent: dict[tuple[str, str], tuple[int, dict]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _http: httpx.AsyncClient | None = None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._route)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._http = httpx.AsyncClient(timeout=30)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    def settings(self) -> dict:
        """The router's [billing] settings pointing at this server."""
        return {"stripe_secret_key": self.api_key, "stripe_webhook_secret": self.webhook_secret,
                "stripe_api_base": self.url}

    # ---------------------------------------------------------------- the API
    async def _route(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        params = parse_form(parse_qsl(await request.text(), keep_blank_values=True)) if request.method == "POST" \
            else parse_form(list(request.query.items()))
        key = request.headers.get("Idempotency-Key")
        self.calls.append((request.method, request.path, params, key))
        if request.method == "POST" and key:
            done = self._idempotent.get((request.path, key))
            if done is not None:
                return web.json_response(done[1], status=done[0],
                                         headers={"Idempotent-Replayed": "true", **_no_retry(done[0])})
        intents = request.path == "/v1/payment_intents"
        if self.intents_gate is not None and intents and request.method == "POST":
            await self.intents_gate.wait()
        if request.method == "POST" and request.path == "/v1/transfers":
            return await self._transfer_call(params, key)
        if self.unavailable and intents and request.method == "POST":
            self.unavailable -= 1
            return _trouble(503)
        if self.intents_list_unavailable and intents and request.method == "GET":
            self.intents_list_unavailable -= 1
            return _trouble(503)
        if (self.intents_lost_answers or self.intents_errors) and intents and request.method == "POST":
            if self.intents_lost_answers:
                self.intents_lost_answers -= 1
                self._answer(request.method, request.path, params)  # made; its answer is lost
            else:
                self.intents_errors -= 1
            status, body = 500, {"error": {"type": "api_error", "message": "An unknown error occurred."}}
        else:
            status, body = self._answer(request.method, request.path, params)
        if request.method == "POST" and key:
            self._idempotent[(request.path, key)] = (status, body)
        return web.json_response(body, status=status, headers=_no_retry(status))

    def _answer(self, method: str, path: str, p: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/customers":
            return 200, self._customer(p)
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, self._session(p)
        if method == "POST" and path == "/v1/payment_intents":
            return self._off_session(p)
        if method == "GET" and path == "/v1/transfers":
            data = [t for t in self.transfers.values()
                    if p.get("transfer_group") in (None, t["transfer_group"])
                    and p.get("destination") in (None, t["destination"])]
            data.sort(key=lambda t: t["created"], reverse=True)
            return 200, {"object": "list", "url": "/v1/transfers", "has_more": False, "data": copy.deepcopy(data)}
        if method == "GET" and path == "/v1/payment_intents":
            data = [pi for pi in self.intents.values()
                    if p.get("customer") in (None, pi["customer"]) and _created_in(pi["created"], p.get("created"))]
            return 200, _page("/v1/payment_intents", data, p)
        if method == "GET" and path == "/v1/refunds":
            data = [r for r in self.refunds.values() if r["charge"] == p.get("charge")]
            return 200, {"object": "list", "url": "/v1/refunds", "has_more": False, "data": copy.deepcopy(data)}
        stores = {"customers": self.customers, "payment_intents": self.intents, "charges": self.charges,
                  "refunds": self.refunds, "disputes": self.disputes, "transfers": self.transfers}
        if method == "GET" and len(parts) == 3 and parts[1] in stores:
            obj = stores[parts[1]].get(parts[2])
            if obj is not None:
                return 200, copy.deepcopy(obj)
            return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "message": f"No such {parts[1][:-1]}: '{parts[2]}'"}}
        if method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
            obj = self.sessions.get(parts[3])
            if obj is not None:
                return 200, copy.deepcopy(obj)
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"}}

    async def _transfer_call(self, p: dict, key: str | None) -> web.Response:
        if self.transfers_unavailable:
            self.transfers_unavailable -= 1
            return web.json_response({"error": {"type": "api_error", "message": "Stripe is having trouble."}},
                                     status=503, headers={"Stripe-Should-Retry": "false"})
        status, body = self._transfer(p)
        if key:
            self._idempotent[("/v1/transfers", key)] = (status, body)
        if self.transfers_gate is not None:
            await self.transfers_gate.wait()
        return web.json_response(body, status=status)

    def _transfer(self, p: dict) -> tuple[int, dict]:
        """Stripe's POST /v1/transfers: our balance to a connected account, in cents."""
        destination = p.get("destination") or ""
        if not destination.startswith("acct_") or destination in self.unknown_accounts:
            return 400, {"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "destination",
                                   "message": f"No such destination: '{destination}'"}}
        if p.get("currency") != "usd" or not str(p.get("amount", "")).isdigit() or int(p["amount"]) <= 0:
            return 400, {"error": {"type": "invalid_request_error", "param": "amount",
                                   "message": "this test server transfers a positive whole number of USD cents"}}
        t = {"id": _new("tr"), "object": "transfer", "amount": int(p["amount"]), "amount_reversed": 0,
             "currency": "usd", "destination": destination, "destination_payment": _new("py"),
             "balance_transaction": _new("txn"), "transfer_group": p.get("transfer_group"),
             "description": p.get("description"), "metadata": p.get("metadata", {}), "reversed": False,
             "reversals": {"object": "list", "data": [], "has_more": False}, "created": _now(), "livemode": False}
        self.transfers[t["id"]] = t
        return 200, copy.deepcopy(t)

    def _customer(self, p: dict) -> dict:
        c = {"id": _new("cus"), "object": "customer", "created": _now(), "email": p.get("email"), "livemode": False,
             "name": p.get("name"), "metadata": p.get("metadata", {}),
             "invoice_settings": {"default_payment_method": None}}
        self.customers[c["id"]] = c
        return c

    def _session(self, p: dict) -> dict:
        line = p["line_items"][0]
        cents = int(line["price_data"]["unit_amount"]) * int(line.get("quantity", 1))
        sid = _new("cs_test")
        s = {"id": sid, "object": "checkout.session", "mode": p.get("mode"), "status": "open",
             "payment_status": "unpaid", "amount_total": cents, "amount_subtotal": cents, "currency": "usd",
             "customer": p.get("customer"), "client_reference_id": p.get("client_reference_id"),
             "metadata": p.get("metadata", {}), "payment_intent": None, "success_url": p.get("success_url"),
             "cancel_url": p.get("cancel_url"), "url": f"https://checkout.stripe.com/c/pay/{sid}",
             "expires_at": _now() + 86_400, "created": _now(), "livemode": False,
             "_payment_intent_data": p.get("payment_intent_data", {})}
        self.sessions[sid] = s
        return self.public(s)

    @staticmethod
    def public(obj: dict) -> dict:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _intent(self, *, cents: int, customer: str | None, card: str, metadata: dict, status: str,
                setup_future_usage: str | None = None, error: dict | None = None) -> dict:
        pi = {"id": _new("pi"), "object": "payment_intent", "amount": cents,
              "amount_received": cents if status == "succeeded" else 0, "currency": "usd", "customer": customer,
              "payment_method": card, "status": status, "latest_charge": None, "metadata": metadata,
              "last_payment_error": error, "setup_future_usage": setup_future_usage, "created": _now(),
              "livemode": False, "confirmation_method": "automatic", "capture_method": "automatic_async"}
        if status == "succeeded":
            ch = {"id": _new("ch"), "object": "charge", "amount": cents, "amount_captured": cents, "amount_refunded": 0,
                  "captured": True, "currency": "usd", "customer": customer, "payment_intent": pi["id"],
                  "payment_method": card, "paid": True, "refunded": False, "disputed": False, "status": "succeeded",
                  "created": _now(), "metadata": {}, "livemode": False}
            self.charges[ch["id"]] = ch
            pi["latest_charge"] = ch["id"]
        self.intents[pi["id"]] = pi
        return pi

    def _off_session(self, p: dict) -> tuple[int, dict]:
        customer, card = p.get("customer"), p.get("payment_method")
        if p.get("confirm") != "true" or p.get("off_session") != "true":
            return 400, {"error": {"type": "invalid_request_error", "message": "this test server confirms "
                                                                               "off-session PaymentIntents only"}}
        if card not in self.saved_cards.get(customer or "", set()):
            return 400, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "param": "payment_method",
                                   "message": f"The provided PaymentMethod {card} is not attached to {customer}."}}
        cents = int(p["amount"])
        if self.declines:
            code, decline, message = DECLINES[self.declines.popleft()]
            error = {"type": "card_error", "code": code, "decline_code": decline, "message": message}
            pi = self._intent(cents=cents, customer=customer, card=card, metadata=p.get("metadata", {}),
                              status="requires_payment_method", error=error)
            self.pending.append(self.event("payment_intent.payment_failed", pi))
            return 402, {"error": {**error, "payment_intent": copy.deepcopy(pi)}}
        pi = self._intent(cents=cents, customer=customer, card=card, metadata=p.get("metadata", {}), status="succeeded")
        self.pending.append(self.event("payment_intent.succeeded", pi))
        self.pending.append(self.event("charge.succeeded", self.charges[pi["latest_charge"]]))
        return 200, copy.deepcopy(pi)

    # ---------------------------------------------------------------- what the client and the bank do
    def pay_session(self, session_id: str, card: str = "pm_card_visa") -> list[dict]:
        """The client pays on the Checkout page: the session completes, the card is saved to the
        customer (setup_future_usage), and Stripe's events are returned (and queued)."""
        s = self.sessions[session_id]
        pid = s["_payment_intent_data"]
        pi = self._intent(cents=s["amount_total"], customer=s["customer"], card=card, metadata=pid.get("metadata", {}),
                          status="succeeded", setup_future_usage=pid.get("setup_future_usage"))
        if pid.get("setup_future_usage") == "off_session":
            self.saved_cards.setdefault(s["customer"], set()).add(card)
        s.update(status="complete", payment_status="paid", payment_intent=pi["id"])
        events = [self.event("checkout.session.completed", self.public(s)),
                  self.event("payment_intent.succeeded", pi),
                  self.event("charge.succeeded", self.charges[pi["latest_charge"]])]
        self.pending.extend(events)
        return events

    def refund(self, charge_id: str, cents: int | None = None) -> dict:
        ch = self.charges[charge_id]
        cents = ch["amount"] - ch["amount_refunded"] if cents is None else cents
        r = {"id": _new("re"), "object": "refund", "amount": cents, "charge": charge_id, "currency": "usd",
             "payment_intent": ch["payment_intent"], "status": "succeeded", "created": _now()}
        self.refunds[r["id"]] = r
        ch["amount_refunded"] += cents
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        event = self.event("charge.refunded", ch)  # without `refunds`, as Stripe's API since 2022-11-15
        self.pending.append(event)
        return event

    def dispute(self, charge_id: str, cents: int | None = None, reason: str = "fraudulent") -> dict:
        ch = self.charges[charge_id]
        d = {"id": _new("dp"), "object": "dispute", "amount": ch["amount"] if cents is None else cents,
             "charge": charge_id, "payment_intent": ch["payment_intent"], "currency": "usd", "reason": reason,
             "status": "needs_response", "created": _now()}
        self.disputes[d["id"]] = d
        ch["disputed"] = True
        event = self.event("charge.dispute.created", d)
        self.pending.append(event)
        return event

    def event(self, kind: str, obj: dict) -> dict:
        return {"id": _new("evt"), "object": "event", "api_version": API_VERSION, "created": _now(), "type": kind,
                "data": {"object": copy.deepcopy(obj)}, "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}}

    # ---------------------------------------------------------------- webhooks
    def sign(self, payload: bytes, timestamp: int | None = None, secret: str | None = None) -> str:
        t = _now() if timestamp is None else timestamp
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{t}.".encode() + payload, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    async def send(self, event: dict, *, timestamp: int | None = None, secret: str | None = None,
                   signature: str | None = None) -> httpx.Response:
        """POST one event to the router's webhook, signed (or with the `signature` given)."""
        assert self._http is not None and self.webhook_url, "set webhook_url to the router's /v1/billing/webhook"
        payload = json.dumps(event).encode()
        sig = signature if signature is not None else self.sign(payload, timestamp, secret)
        return await self._http.post(self.webhook_url, content=payload,
                                     headers={"Stripe-Signature": sig, "Content-Type": "application/json"})

    async def deliver(self, *, types: tuple[str, ...] | None = None) -> list[httpx.Response]:
        """Send the queued events (those of `types`, or all), in order; each must be answered 200."""
        chosen = [e for e in self.pending if types is None or e["type"] in types]
        self.pending = [e for e in self.pending if e not in chosen]
        answers = []
        for event in chosen:
            r = await self.send(event)
            assert r.status_code == 200, (event["type"], r.status_code, r.text)
            answers.append(r)
        return answers

    def posts(self, path: str) -> list[tuple[str, str, dict, str | None]]:
        return [c for c in self.calls if c[0] == "POST" and c[1] == path]

    def gets(self, path: str) -> list[tuple[str, str, dict, str | None]]:
        return [c for c in self.calls if c[0] == "GET" and c[1] == path]

    def forget_idempotency_keys(self) -> None:
        """A day has passed: Stripe no longer remembers any Idempotency-Key (a request with one is new)."""
        self._idempotent.clear()


@contextlib.asynccontextmanager
async def running_stripe() -> AsyncIterator[StripeServer]:
    server = StripeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def stripe_server() -> AsyncIterator[StripeServer]:
    async with running_stripe() as server:
        yield server


async def wait_for(predicate, what: str, deadline_s: float = 10.0) -> None:
    """Poll until `predicate()` holds, failing after a deadline (never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
