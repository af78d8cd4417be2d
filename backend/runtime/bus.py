"""The event bus: what happened (a host joined, a key was revoked, an engine failed...), published
by the service it happened in and delivered to whoever listens: the operator's event ring (GET
/admin/events), the log file, the console's live stream (GET /admin/events/stream), and later alerts.

Publishing never blocks and never fails the publisher: the request path publishes. Two kinds of
subscriber:
- a sink (`attach`): a cheap synchronous callable run inside publish (the ring, the log line); an
  exception it raises is logged and counted, never passed to the publisher;
- a subscription (`subscribe`): a bounded queue read by its own task. When it is full the event is
  dropped for that subscriber alone and counted in its `missed`, which it reports to its reader
  (the SSE stream sends the count), so a slow reader costs the publisher nothing.

Events are typed: one small class per family of kinds (HostEvent, KeyEvent...), so a subscriber
picks what it wants by class (`subscribe(..., types=(HostEvent,))`), and every event carries the
same operator-readable fields (kind, subject, message, level) plus the bus's sequence number and
time. `add(kind, subject, message, level)` builds the event of the kind's family: the call shape
services used on the old EventLog, kept so that every emitter reads the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import ClassVar

import msgspec

from backend.runtime.clock import REAL_CLOCK, Clock

log = logging.getLogger("tokenmill.events")

LEVELS = ("info", "warning", "error")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened. `seq` (1, 2, ... for this process) and `ts_us` (UTC µs) are set by
    the bus when it is published; a kind without a family of its own is published as a plain Event."""

    prefixes: ClassVar[tuple[str, ...]] = ()  # the kinds of this family start with one of these
    kind: str  # e.g. "host.joined", "key.revoked", "model.disabled", "upstream.no_usage"
    subject: str  # what it is about: a host, client, key or model id
    message: str
    level: str = "info"  # "info", "warning", "error"
    seq: int = 0
    ts_us: int = 0


class BackendEvent(Event, frozen=True, kw_only=True):
    prefixes = ("backend.",)  # backend.started


class HostEvent(Event, frozen=True, kw_only=True):
    # host.enrolled / joined / back / lost / left / draining / resumed / removed / agent_replaced /
    # provisioned / torn_down / teardown_failed
    prefixes = ("host.",)


class ReplicaEvent(Event, frozen=True, kw_only=True):
    prefixes = ("replica.",)  # replica.ejected / checked / check_failed


class ModelEvent(Event, frozen=True, kw_only=True):
    prefixes = ("model.",)  # model.enabled / disabled


class ClientEvent(Event, frozen=True, kw_only=True):
    prefixes = ("client.",)  # client.created / credit


class KeyEvent(Event, frozen=True, kw_only=True):
    prefixes = ("key.",)  # key.issued / revoked


class LedgerEvent(Event, frozen=True, kw_only=True):
    prefixes = ("ledger.",)  # ledger.holds_voided / error


class UpstreamEvent(Event, frozen=True, kw_only=True):
    prefixes = ("upstream.",)  # upstream.no_usage, engine failures


class ProvisionEvent(Event, frozen=True, kw_only=True):
    prefixes = ("provision.", "host_key.")  # provision.failed / interrupted, host_key.confirmed


class LoopEvent(Event, frozen=True, kw_only=True):
    prefixes = ("loop.",)  # the supervisor's: a background loop crashed, restarted...


class PriceEvent(Event, frozen=True, kw_only=True):
    prefixes = ("price.",)  # price.changed (the engine, or back to list) / pinned / unpinned / range


class AutoscaleEvent(Event, frozen=True, kw_only=True):
    # autoscale.scale_up / scale_down / wait_up / wait_down / blocked / off: a decision with its reason
    prefixes = ("autoscale.",)


class BillingEvent(Event, frozen=True, kw_only=True):
    # billing.payment_succeeded / payment_failed / refunded / disputed / recharge_started /
    # recharge_failed / recharge_requires_action / recharge_capped / recharge_disabled: Stripe money
    prefixes = ("billing.",)


class InvoiceEvent(Event, frozen=True, kw_only=True):
    prefixes = ("invoice.",)  # invoice.issued / failed (one client's month) / run (a month's generation)


FAMILIES: tuple[type[Event], ...] = (BackendEvent, HostEvent, ReplicaEvent, ModelEvent, ClientEvent, KeyEvent,
                                     LedgerEvent, UpstreamEvent, ProvisionEvent, LoopEvent, PriceEvent,
                                     AutoscaleEvent, BillingEvent, InvoiceEvent)


def event_type(kind: str) -> type[Event]:
    """The class of events of this kind (Event when no family claims it)."""
    for family in FAMILIES:
        if kind.startswith(family.prefixes):
            return family
    return Event


def make_event(kind: str, subject: str, message: str, level: str = "info") -> Event:
    return event_type(kind)(kind=kind, subject=subject, message=message, level=level)


class Subscription:
    """A bounded queue of events for one reader. Only the bus puts; a full queue drops the event and
    counts it. Read it with `await get()`, `drain()`, or `async for`."""

    def __init__(self, bus: EventBus, name: str, maxsize: int, types: tuple[type[Event], ...] | None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize: at least 1")
        self.bus, self.name, self.maxsize, self.types = bus, name, maxsize, types
        self.delivered = 0  # events put in the queue
        self.missed = 0  # events dropped because the queue was full, since the subscription began
        self._unreported = 0  # of those, not yet taken by take_missed()
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def _offer(self, event: Event) -> None:
        if self.closed or (self.types is not None and not isinstance(event, self.types)):
            return
        if len(self._queue) >= self.maxsize:
            self.missed += 1
            self._unreported += 1
            return
        self._queue.append(event)
        self.delivered += 1
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_missed(self) -> int:
        """Events dropped since the last call: what the reader should tell its own reader."""
        n, self._unreported = self._unreported, 0
        return n

    def drain(self) -> list[Event]:
        """Every queued event, oldest first, without waiting."""
        out = list(self._queue)
        self._queue.clear()
        return out

    async def get(self) -> Event:
        """The next event, waiting for one. Raises EOFError once closed and empty."""
        while not self._queue:
            if self.closed:
                raise EOFError(f"subscription {self.name} closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving; a reader waiting in get() gets what is queued, then EOFError."""
        if not self.closed:
            self.closed = True
            self.bus._subscriptions.discard(self)
            self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None


class EventBus:
    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
        self._seq = itertools.count(1)  # next() is atomic under the GIL: a publisher off the loop is safe
        self._sinks: list[tuple[str, Callable[[Event], None]]] = []
        self._subscriptions: set[Subscription] = set()
        self.sink_errors = 0
        # Subscriptions wake futures of the loop they were made on; a publisher on another thread
        # (a worker thread) hands its event to that loop instead of touching them.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.closed = False

    # ------------------------------------------------------------------ publishing
    def publish(self, event: Event) -> Event:
        """Stamp the event with its sequence number and time and deliver it. Never blocks, never
        raises. Returns the stamped event."""
        try:
            event = msgspec.structs.replace(event, seq=next(self._seq), ts_us=self.clock.now_us())
        except Exception:  # a clock that failed: still deliver, unstamped time
            log.exception("could not stamp event %s", event.kind)
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            try:
                loop.call_soon_threadsafe(self._deliver, event)
            except RuntimeError:  # the loop is closed: the sinks still see it
                self._deliver(event, subscriptions=False)
            return event
        self._deliver(event)
        return event

    def add(self, kind: str, subject: str, message: str, level: str = "info") -> Event:
        """Publish an event of `kind` (typed by its family): the EventLog call shape."""
        return self.publish(make_event(kind, subject, message, level))

    def _deliver(self, event: Event, subscriptions: bool = True) -> None:
        for name, sink in self._sinks:
            try:
                sink(event)
            except Exception:
                self.sink_errors += 1
                log.exception("event sink %s failed on %s", name, event.kind)
        if subscriptions:
            for sub in tuple(self._subscriptions):
                sub._offer(event)

    # ------------------------------------------------------------------ subscribing
    def attach(self, name: str, sink: Callable[[Event], None]) -> None:
        """Run `sink(event)` for every event, inside publish: only for cheap, non-blocking work."""
        self._sinks.append((name, sink))

    def subscribe(self, name: str, maxsize: int = 1000, types: Iterable[type[Event]] | None = None) -> Subscription:
        """A bounded queue of the events published from now on (of these types, or all). Call on
        the event loop; close() it when done."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._loop_thread = loop, threading.get_ident()
        sub = Subscription(self, name, maxsize, tuple(types) if types is not None else None)
        if self.closed:
            sub.closed = True  # born ended: its reader stops at once
        else:
            self._subscriptions.add(sub)
        return sub

    def close(self) -> None:
        """End every subscription (their readers get what is queued, then stop) and refuse new ones;
        sinks still receive. Called when the server shuts down: a live stream must not hold it up."""
        self.closed = True
        for sub in tuple(self._subscriptions):
            sub.close()

    def subscriptions(self) -> list[Subscription]:
        return sorted(self._subscriptions, key=lambda s: s.name)


def log_sink(event: Event) -> None:
    """The log file's subscriber: one line per event, warnings and errors at WARNING."""
    log.log(logging.WARNING if event.level != "info" else logging.INFO, "%s %s: %s",
            event.kind, event.subject, event.message)
