"""GET /admin/events/stream: the bus's events as Server-Sent Events, for the console's Events view.

The stream starts with the kept events after `after` (the ring, as GET /admin/events), then sends
each event as it is published. Each message is `id: <seq>`, `event: event`, `data: <EventOut JSON>`.
The reader has a bounded queue on the bus: when it falls behind, events are dropped for it alone
and a `missed` message says how many (`data: {"missed": n}`), also sent when `after` is older than
what the ring still keeps. A comment line is sent every KEEPALIVE_S of silence, so a connection
that died is noticed by both sides. The stream ends after `events_stream_s` (settings); the reader
reconnects with `after` = the last id it saw and loses nothing the ring still holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEventMessage

from backend.runtime.bus import Event, EventBus
from backend.runtime.clock import Clock
from backend.runtime.event_log import EventLog
from backend.wire.admin import EventOut

KEEPALIVE_S = 15.0
QUEUE = 1000  # events a reader may fall behind by before it misses some
_encode = msgspec.json.Encoder().encode


def _message(e: Event) -> ServerSentEventMessage:
    out = EventOut(e.seq, e.ts_us, e.kind, e.subject, e.message, e.level)
    return ServerSentEventMessage(data=_encode(out).decode(), event="event", id=str(e.seq))


def _missed(count: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=_encode({"missed": count}).decode(), event="missed")


async def event_stream(bus: EventBus, ring: EventLog, clock: Clock, after: int, duration_s: float,
                       queue: int = QUEUE) -> AsyncIterator[ServerSentEventMessage]:
    # Subscribed before the ring is read, with no await between: nothing published in between is lost
    # and nothing is sent twice (the live events are those after the last kept one sent).
    sub = bus.subscribe("events-stream", maxsize=queue)
    try:
        kept = ring.since(after, limit=2000)
        if kept and kept[0].seq > after + 1 and after > 0:
            yield _missed(kept[0].seq - after - 1)  # pushed out of the ring before this reader came back
        last = after
        for e in kept:
            yield _message(e)
            last = e.seq
        deadline = clock.monotonic() + duration_s
        while (left := deadline - clock.monotonic()) > 0:
            try:
                e = await clock.wait_for(sub.get(), min(KEEPALIVE_S, left))
            except TimeoutError:
                if clock.monotonic() < deadline:
                    yield ServerSentEventMessage(comment="keepalive", data=None)
                continue
            except EOFError:  # the bus closed: the server is shutting down
                return
            if missed := sub.take_missed():
                yield _missed(missed)
            if e.seq > last:
                yield _message(e)
                last = e.seq
    finally:
        sub.close()
