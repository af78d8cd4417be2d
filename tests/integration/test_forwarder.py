"""The Forwarder on its own: an unbilled request to a named replica (canaries), the in-process
transport serving what the network one serves, and retries on another replica before the first
byte. Real router, real SQLite, real simulated engines (tests/router_harness.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from backend.fleet.registry import Replica
from backend.routing.forwarder import Forwarder, UpstreamFailed
from backend.routing.proxy import Proxy
from backend.routing.transports import InProcessTransport, LocalReply
from backend.runtime.clock import now_us
from hostkit.sim.engine import SimEngine
from tests.inprocess_app import app_handler
from tests.router_harness import Router, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
CHAT = "/v1/chat/completions"
MINUTE_US = 60_000_000


def chat(content: str, **extra) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
                       "seed": 7, **extra}).encode()


def replica_of(router: Router, name: str) -> Replica:
    return next(r for r in router.services.fleet.replicas(MODEL) if r.host.name == name)


def engine_app(engine: SimEngine):
    return engine._runner.app  # the engine's aiohttp app, also served on its socket


async def money_rows(router: Router) -> tuple[int, int, int]:
    """Usage events, ledger transfers and open holds in the database."""
    await router.services.ledger.flush()
    async with router.services.engine.connect() as conn:
        return tuple([(await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar()  # type: ignore[return-value]
                      for t in ("usage_event", "ledger_transfer", "ledger_open_hold")])


async def test_an_unbilled_request_reaches_the_named_replica_and_nobody_pays(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        a = await router.add_host("a", [MODEL], payout_share_bps=5000)
        b = await router.add_host("b", [MODEL], payout_share_bps=5000)
        client_id, _ = await router.client_with_key()
        s = router.services
        before = await money_rows(router)
        balances = {acc.code: acc.balance for acc in s.ledger.accounts()}

        # b is draining: a canary still reaches it by name (paying requests no longer would).
        r = await router.http.post(f"/admin/hosts/{b.host_id}/drain", headers=router.admin)
        assert r.status_code == 200
        rep = replica_of(router, "b")
        assert s.fleet.choose(MODEL) is replica_of(router, "a")
        for _ in range(3):
            answer = await s.forwarder.send(rep, CHAT, chat("are you there?"))
            assert answer.replica is rep and answer.status == 200
            assert json.loads(answer.body)["usage"]["completion_tokens"] == 8
        streamed = await s.forwarder.send(rep, CHAT, chat("stream it", stream=True,
                                                          stream_options={"include_usage": True}))
        assert streamed.status == 200 and streamed.headers["Content-Type"].startswith("text/event-stream")
        assert streamed.body.rstrip().endswith(b"data: [DONE]")

        assert (b.engine.requests_total, a.engine.requests_total) == (4, 0)
        assert rep.outstanding == 0
        # No hold, no usage event, no charge, no payout, nothing in the live metrics.
        assert await money_rows(router) == before
        assert {acc.code: acc.balance for acc in s.ledger.accounts()} == balances
        assert s.ledger.account(f"client:{client_id}").available == 10 * 10**9
        now = now_us()
        assert s.proxy.metrics.window(now - MINUTE_US, now + MINUTE_US).requests == 0


async def test_an_unbilled_request_reports_an_engine_it_cannot_reach(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        gone = await router.add_host("gone", [MODEL])
        rep = replica_of(router, "gone")
        await gone.engine.stop()
        with pytest.raises(UpstreamFailed, match="could not be reached") as failed:
            await router.services.forwarder.send(rep, CHAT, chat("hello?"))
        assert failed.value.status == 502
        assert rep.outstanding == 0 and rep.failures == 0  # the canary's caller judges the replica


async def test_the_in_process_transport_serves_what_the_network_serves(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        host = await router.add_host("rig", [MODEL], payout_share_bps=2500)
        s = router.services
        rep = replica_of(router, "rig")
        over_http = await s.forwarder.send(rep, CHAT, chat("the same request"))

        local = Forwarder(s.fleet, InProcessTransport.by_url({host.engine.url: app_handler(engine_app(host.engine))}))
        await local.start()
        try:
            in_process = await local.send(rep, CHAT, chat("the same request"))
            assert in_process.status == over_http.status == 200
            got, want = json.loads(in_process.body), json.loads(over_http.body)
            assert got["choices"] == want["choices"] and got["usage"] == want["usage"]

            # A paying request through the same Proxy code, forwarded in-process: held, settled, paid.
            client_id, secret = await router.client_with_key("sim")
            key = s.clients.authenticate(secret)
            proxy = Proxy(ledger=s.ledger, clients=s.clients, fleet=s.fleet, models=s.models, pricer=s.pricer,
                          events=s.events, limiter=s.proxy.limiter, max_body_bytes=s.proxy.max_body_bytes,
                          forwarder=local, metrics=s.proxy.metrics)
            reply = await proxy.handle("chat", key, chat("the same request"))
            assert reply.status == 200 and json.loads(reply.body)["choices"] == want["choices"]
            reply = await proxy.handle("chat", key, chat("the same request", stream=True))
            sse = b"".join([chunk async for chunk in reply.stream])
            # The usage the router asked the engine for is read and removed: the client did not ask.
            assert sse.endswith(b"data: [DONE]\n\n") and b'"choices":[]' not in sse
        finally:
            await local.close()
        await s.ledger.flush()
        async with s.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT status, completion_tokens, charged, host_share FROM usage_event"
                                            " WHERE client_id = :c"), {"c": client_id})).all()
        assert [(r.status, r.completion_tokens) for r in rows] == [("ok", 8), ("ok", 8)]
        assert all(r.charged > 0 and r.host_share == r.charged * 2500 // 10_000 for r in rows)
        assert s.ledger.account(f"host:{host.host_id}:payable").balance == sum(r.host_share for r in rows)


async def test_retries_go_to_another_replica_before_the_first_byte(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        bad = await router.add_host("bad", [MODEL])
        good = await router.add_host("good", [MODEL])
        s = router.services
        bad_rep, good_rep = replica_of(router, "bad"), replica_of(router, "good")

        bad.engine.fail("500")
        rep, resp, body = await s.forwarder.open(MODEL, CHAT, chat("x"), bad_rep, stream=False)
        assert rep is good_rep and resp.status == 200 and json.loads(body)["usage"]["completion_tokens"] == 8
        rep.outstanding -= 1  # the caller's part once done with the response
        resp.release()
        assert bad_rep.failures == 1 and bad_rep.ejected_until > 0  # ejected with backoff
        assert s.fleet.choose(MODEL) is good_rep

        # A stream that ends before its first event is retried too: nothing reached the client yet.
        s.fleet.succeeded(bad_rep)
        bad.engine.fail("cut_after", 0)
        rep, resp, first = await s.forwarder.open(MODEL, CHAT, chat("y", stream=True), bad_rep, stream=True)
        assert rep is good_rep and first.startswith(b"data: ")
        rep.outstanding -= 1
        resp.close()
        assert bad_rep.failures == 1 and (bad_rep.outstanding, good_rep.outstanding) == (0, 0)

        # In-process: a replica with no engine behind it is refused, and the request goes elsewhere.
        async def refuse(path: str, body: bytes, headers) -> LocalReply:
            raise ConnectionRefusedError("engine down")

        local = Forwarder(s.fleet, InProcessTransport(
            lambda r: refuse if r is bad_rep else app_handler(engine_app(good.engine))))
        s.fleet.succeeded(bad_rep)
        rep, resp, body = await local.open(MODEL, CHAT, chat("z"), bad_rep, stream=False)
        assert rep is good_rep and resp.status == 200 and json.loads(body)["choices"]
        rep.outstanding -= 1
        resp.release()
        assert bad_rep.failures == 1

        # Every replica failing: the caller gets UpstreamFailed, having tried each once.
        good.engine.fail("500")
        s.fleet.succeeded(bad_rep)
        with pytest.raises(UpstreamFailed, match="tried 2 replicas") as failed:
            await s.forwarder.open(MODEL, CHAT, chat("w"), bad_rep, stream=False)
        assert failed.value.status == 502
        assert (bad_rep.outstanding, good_rep.outstanding) == (0, 0)
