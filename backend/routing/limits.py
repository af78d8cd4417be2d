"""Per-key request rate limits: a token bucket each, in memory."""

from __future__ import annotations

from backend.runtime.clock import REAL_CLOCK, Clock


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Clock = REAL_CLOCK) -> None:
        self._mono = clock.monotonic  # bound once: read per request
        self.rate = rate_per_s
        self.burst = max(burst, 1)
        self._buckets: dict[str, list[float]] = {}  # key id -> [tokens, last refill time]

    def allow(self, key_id: str) -> float:
        """0 if the request may go now, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self._mono()
        b = self._buckets.get(key_id)
        if b is None:
            b = self._buckets[key_id] = [float(self.burst), now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens >= 1:
            b[0] = tokens - 1
            return 0.0
        b[0] = tokens
        return (1 - tokens) / self.rate
