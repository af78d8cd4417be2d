"""GET /admin/events/stream over real HTTP on loopback: the kept events, then live ones as the
services publish them, a missed count for a reader that fell behind, the end of the stream after
events_stream_s, and a shutdown that an open stream does not hold up."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from backend.api.event_stream import event_stream
from backend.runtime.bus import EventBus
from backend.runtime.clock import REAL_CLOCK
from backend.runtime.event_log import EventLog
from backend.wire.admin import EventOut
from backend.wire.admin_client import AdminClient
from tests.router_harness import router_settings, running_router


async def messages(response: httpx.Response):
    """(event, id, data) of each Server-Sent Event, read by hand: the wire format itself."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield fields.get("event"), fields.get("id"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def next_of_kind(stream, kind: str, limit_s: float = 10.0):
    async def find():
        async for event, id_, data in stream:
            if event == "event" and data["kind"] == kind:
                return id_, data
        raise AssertionError(f"stream ended before {kind}")
    return await asyncio.wait_for(find(), limit_s)


async def test_the_stream_sends_the_kept_events_then_each_new_one(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        async with router.http.stream("GET", "/admin/events/stream", headers=router.admin) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            stream = messages(r)
            id_, started = await next_of_kind(stream, "backend.started")
            assert int(id_) == started["seq"] and started["subject"] == "tokenmill"
            # Published by the client service itself (not by the admin controller), seen live.
            created = await router.http.post("/admin/clients", json={"name": "Acme", "id": "acme"},
                                             headers=router.admin)
            assert created.status_code == 201
            id_, event = await next_of_kind(stream, "client.created")
            assert event["subject"] == "acme" and event["message"] == "client Acme created"
            assert event["seq"] > started["seq"] and int(id_) == event["seq"] and event["level"] == "info"
            await router.http.post("/admin/clients/acme/keys", json={"name": "ci"}, headers=router.admin)
            _, issued = await next_of_kind(stream, "key.issued")
            assert issued["seq"] > event["seq"]
        # Reconnecting after the last seen one: only what came after, nothing twice.
        router.services.events.add("test.after", "x", "after the reader left")
        async with router.http.stream("GET", f"/admin/events/stream?after={issued['seq']}",
                                      headers=router.admin) as r:
            first = await anext(messages(r))
            assert first[0] == "event" and first[2]["kind"] == "test.after"


async def test_the_stream_needs_the_admin_token_and_a_valid_after(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        r = await router.http.get("/admin/events/stream")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
        r = await router.http.get("/admin/events/stream?after=-1", headers=router.admin)
        assert r.status_code == 400 and r.json()["error"]["param"] == "after"


async def test_the_stream_ends_after_events_stream_s_and_the_typed_client_reads_it(tmp_path):
    async with running_router(router_settings(tmp_path, events_stream_s=0.5)) as router:
        api = AdminClient(router.url, router.services.admin_token)
        try:
            got = [e async for e in api.event_stream()]  # returns: the backend ended the stream
        finally:
            await api.aclose()
        assert got and all(isinstance(e, EventOut) for e in got)
        assert "backend.started" in [e.kind for e in got]


async def test_a_reader_that_falls_behind_is_told_how_many_it_missed():
    bus = EventBus()
    ring = EventLog(capacity=3, bus=bus)
    for i in range(5):
        bus.add("host.joined", f"h{i}", "joined")
    stream = event_stream(bus, ring, REAL_CLOCK, after=1, duration_s=30, queue=2)
    first = await anext(stream)  # event 2 left the ring (it keeps 3) before this reader came back
    assert first.event == "missed" and json.loads(first.data) == {"missed": 1}
    assert [json.loads((await anext(stream)).data)["seq"] for _ in range(3)] == [3, 4, 5]
    for i in range(5, 10):  # the reader is not reading: its queue of 2 fills, 3 are dropped
        bus.add("host.left", f"h{i}", "left")
    missed = await anext(stream)
    assert missed.event == "missed" and json.loads(missed.data) == {"missed": 3}
    assert [json.loads((await anext(stream)).data)["seq"] for _ in range(2)] == [6, 7]
    bus.add("host.back", "h9", "back")
    assert json.loads((await anext(stream)).data)["seq"] == 11
    await stream.aclose()
    assert not bus.subscriptions()  # the reader's queue went with it


async def test_an_open_stream_does_not_hold_up_the_shutdown(tmp_path):
    http = httpx.AsyncClient(timeout=30)
    got: list = []

    async def read(url: str, headers: dict) -> None:
        async with http.stream("GET", f"{url}/admin/events/stream", headers=headers) as r:
            got.extend([m async for m in messages(r)])

    async def run() -> None:
        async with running_router(router_settings(tmp_path)) as router:  # events_stream_s: 300 s
            reader = asyncio.create_task(read(router.url, router.admin))
            while not router.services.bus.subscriptions():
                await asyncio.sleep(0.01)
        await asyncio.wait_for(reader, 10)  # the backend ended it as it shut down

    try:
        await asyncio.wait_for(run(), 60)  # without the fix: uvicorn waits the stream's 300 s out
    except TimeoutError:
        pytest.fail("the server waited for the open events stream to end")
    finally:
        await http.aclose()
    assert any(data.get("kind") == "backend.started" for _, _, data in got)


async def test_the_client_service_emits_its_own_events_once(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        h = router.admin
        assert (await router.http.post("/admin/clients", json={"name": "Acme", "id": "acme"}, headers=h)).is_success
        credit = {"amount_usd": "5.00", "idempotency_key": "grant-1", "source": "grant"}
        for _ in range(2):  # the second is a replay: no second event
            assert (await router.http.post("/admin/clients/acme/credit", json=credit, headers=h)).is_success
        key = (await router.http.post("/admin/clients/acme/keys", json={"name": "ci"}, headers=h)).json()["key"]
        for _ in range(2):  # revoking a revoked key changes nothing: no second event
            assert (await router.http.post(f"/admin/keys/{key['id']}/revoke", headers=h)).is_success
        events = (await router.http.get("/admin/events", headers=h)).json()
        mine = [(e["kind"], e["subject"]) for e in events if e["kind"].startswith(("client.", "key."))]
        assert mine == [("client.created", "acme"), ("client.credit", "acme"), ("key.issued", key["id"]),
                        ("key.revoked", key["id"])]
        credit_event = next(e for e in events if e["kind"] == "client.credit")
        assert credit_event["message"] == "$5.000000 grant to Acme"
