"""What happened, for the operator: host joined / lost / drained, key issued / revoked, model
toggled, errors. A bounded in-memory ring (the console's Events view reads it) mirrored to the log."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from backend.runtime.clock import now_us

log = logging.getLogger("tokenmill.events")


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    ts_us: int
    kind: str  # e.g. "host.joined", "key.revoked", "model.disabled", "upstream.error"
    subject: str  # what it is about: a host, client, key or model id
    message: str
    level: str = "info"  # "info", "warning", "error"


class EventLog:
    def __init__(self, capacity: int = 2000) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, kind: str, subject: str, message: str, level: str = "info") -> Event:
        self._seq += 1
        event = Event(self._seq, now_us(), kind, subject, message, level)
        self._ring.append(event)
        log.log(logging.WARNING if level != "info" else logging.INFO, "%s %s: %s", kind, subject, message)
        return event

    def since(self, seq: int = 0, limit: int = 500) -> list[Event]:
        """Events after `seq`, oldest first (at most `limit`, the newest ones)."""
        out = [e for e in self._ring if e.seq > seq]
        return out[-limit:]
