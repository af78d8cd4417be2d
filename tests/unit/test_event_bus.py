"""The event bus: typed events, bounded subscriptions that drop and count what a slow reader
missed, a publisher that never waits and never fails, the operator's ring as one subscriber."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from backend.runtime.bus import (
    ClientEvent,
    Event,
    EventBus,
    HostEvent,
    KeyEvent,
    LoopEvent,
    event_type,
    log_sink,
)
from backend.runtime.clock import VirtualClock, to_us
from backend.runtime.clock import from_us as _from_us
from backend.runtime.event_log import EventLog

START_US = to_us(_from_us(1_767_225_600_000_000))


async def test_events_are_typed_by_the_family_of_their_kind():
    bus = EventBus()
    assert type(bus.add("host.joined", "h1", "rig joined")) is HostEvent
    assert type(bus.add("key.revoked", "k1", "revoked")) is KeyEvent
    assert type(bus.add("client.created", "c1", "acme created")) is ClientEvent
    assert event_type("loop.restarted") is LoopEvent
    assert type(bus.add("test.long", "x", "no family")) is Event
    assert issubclass(HostEvent, Event)


async def test_the_bus_numbers_and_times_each_event_on_its_clock():
    clock = VirtualClock(START_US)
    bus = EventBus(clock)
    a = bus.publish(HostEvent(kind="host.lost", subject="h1", message="gone", level="warning"))
    await clock.sleep(5)
    b = bus.add("host.back", "h1", "back")
    assert (a.seq, b.seq) == (1, 2)
    assert (a.ts_us, b.ts_us) == (START_US, START_US + 5_000_000)
    assert a.level == "warning" and b.level == "info"


async def test_a_subscription_is_bounded_drops_the_overflow_and_counts_it():
    bus = EventBus()
    sub = bus.subscribe("slow", maxsize=3)
    for i in range(5):
        bus.add("host.joined", f"h{i}", "joined")
    assert len(sub) == 3 and sub.delivered == 3 and sub.missed == 2
    assert [e.subject for e in sub.drain()] == ["h0", "h1", "h2"]  # the oldest kept, the newest dropped
    assert sub.take_missed() == 2 and sub.take_missed() == 0
    bus.add("host.joined", "h5", "joined")
    assert [e.subject for e in sub.drain()] == ["h5"] and sub.missed == 2


async def test_the_publisher_never_waits_on_a_reader_that_does_not_read():
    bus = EventBus()
    assert not inspect.iscoroutinefunction(bus.publish) and not inspect.iscoroutinefunction(bus.add)
    stuck = bus.subscribe("stuck", maxsize=10)
    fast = bus.subscribe("fast", maxsize=100_000)
    for i in range(20_000):
        bus.add("upstream.no_usage", "h1", f"#{i}")
    assert len(stuck) == 10 and stuck.missed == 19_990
    assert len(fast) == 20_000 and fast.missed == 0  # one slow reader costs the others nothing


async def test_a_failing_sink_never_fails_the_publisher(caplog):
    bus = EventBus()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink bug")

    bus.attach("broken", broken)
    bus.attach("seen", seen.append)
    sub = bus.subscribe("reader")
    with caplog.at_level(logging.ERROR, "tokenmill.events"):
        event = bus.add("model.disabled", "m", "off")
    assert event.seq == 1 and seen == [event] and sub.drain() == [event]
    assert bus.sink_errors == 1 and "sink broken failed" in caplog.text


async def test_a_waiting_reader_wakes_on_publish_and_filters_by_type():
    bus = EventBus()
    hosts = bus.subscribe("hosts", types=[HostEvent])
    got = asyncio.create_task(hosts.get())
    await asyncio.sleep(0)
    assert not got.done()
    bus.add("key.issued", "k1", "issued")  # not a host event: not for this reader
    await asyncio.sleep(0)
    assert not got.done()
    bus.add("host.left", "h1", "left")
    assert (await asyncio.wait_for(got, 5)).kind == "host.left"
    assert hosts.delivered == 1


async def test_an_event_published_from_a_worker_thread_reaches_the_loops_readers():
    bus = EventBus()
    sub = bus.subscribe("reader")
    published = await asyncio.to_thread(bus.add, "provision.failed", "h1", "from a thread", "error")
    event = await asyncio.wait_for(sub.get(), 5)
    assert event == published and event.level == "error"


async def test_closing_ends_the_readers_after_what_is_queued():
    bus = EventBus()
    sub = bus.subscribe("reader")
    bus.add("host.joined", "h1", "joined")
    bus.close()
    assert [e.subject async for e in sub] == ["h1"]
    late = bus.subscribe("late")
    with pytest.raises(EOFError):
        await late.get()
    bus.add("host.left", "h1", "left")  # still fine to publish
    assert not bus.subscriptions()


async def test_the_event_log_is_the_ring_of_the_last_events(caplog):
    bus = EventBus()
    bus.attach("log", log_sink)
    ring = EventLog(capacity=3, bus=bus)
    sub = bus.subscribe("reader")
    with caplog.at_level(logging.INFO, "tokenmill.events"):
        for i in range(5):
            bus.add("host.joined", f"h{i}", f"rig {i} joined")
        ring.add("ledger.error", "r1", "settlement failed", "error")  # the old call shape publishes on the bus
    assert [e.seq for e in ring.since(0)] == [4, 5, 6] and ring.last_seq == 6
    assert [e.seq for e in ring.since(4)] == [5, 6] and [e.seq for e in ring.since(0, limit=1)] == [6]
    assert [e.kind for e in sub.drain()][-1] == "ledger.error"
    assert "host.joined h0: rig 0 joined" in caplog.text
    assert any(r.levelno == logging.WARNING and "settlement failed" in r.message for r in caplog.records)
