"""What happened, for the operator: the bus's events kept in a bounded in-memory ring, the newest
2,000 (GET /admin/events and the console's Events view read it). The ring is one subscriber of
the bus (backend/runtime/bus.py); the log file is another."""

from __future__ import annotations

from collections import deque

from backend.runtime.bus import Event, EventBus

__all__ = ["Event", "EventLog"]


class EventLog:
    def __init__(self, capacity: int = 2000, bus: EventBus | None = None) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self.bus = bus or EventBus()  # a bus of its own when built alone (a tool, a test)
        self.bus.attach("ring", self._ring.append)

    def add(self, kind: str, subject: str, message: str, level: str = "info") -> Event:
        """Publish on the bus (the call shape emitters used before the bus; the ring keeps it)."""
        return self.bus.add(kind, subject, message, level)

    @property
    def last_seq(self) -> int:
        return self._ring[-1].seq if self._ring else 0

    def since(self, seq: int = 0, limit: int = 500) -> list[Event]:
        """Events after `seq`, oldest first (at most `limit`, the newest ones)."""
        out = [e for e in self._ring if e.seq > seq]
        return out[-limit:]
