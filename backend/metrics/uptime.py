"""Each model's uptime as OpenRouter counts it: of the requests answered in a rolling window, the
share that did not fail, where a failure is a 5xx answer or a stream that broke after its first
byte, and a 4xx (400, 401, 402, 403, 404, 413, 429...) is the client's or a refusal, counted
neither way. OpenRouter shows no figure below 100 requests; nor do we (`min_requests`).

On the request path: `record` is O(1) (one slot of a ring of per-bucket counters per model, reset
when its bucket comes round again); reading sums the ring. The window is whole buckets: the one in
progress and those before it back to `window_s`, so it spans window_s minus up to one bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

BUCKET_US = 60_000_000


@dataclass(frozen=True, slots=True)
class Uptime:
    requests: int  # counted in the window: successes and failures
    failures: int
    window_s: int
    min_requests: int

    @property
    def shown(self) -> bool:
        return self.requests >= self.min_requests

    @property
    def ratio(self) -> float | None:
        """Successes over requests (0..1); None below `min_requests`, as OpenRouter shows none."""
        return (self.requests - self.failures) / self.requests if self.shown else None


def is_failure(status: int) -> bool | None:
    """How OpenRouter counts an answer's HTTP status: True a failure (5xx), False a success (2xx,
    3xx), None not counted (4xx: the request's fault, a rate limit, credit)."""
    if status >= 500:
        return True
    if status >= 400:
        return None
    return False


class _Ring:
    __slots__ = ("bucket", "failed", "ok")

    def __init__(self, n: int) -> None:
        self.bucket = [-1] * n  # which bucket each slot holds now
        self.ok = [0] * n
        self.failed = [0] * n


class UptimeWindow:
    def __init__(self, window_s: int = 1800, min_requests: int = 100, bucket_us: int = BUCKET_US) -> None:
        if window_s * 1_000_000 < bucket_us:
            raise ValueError(f"window_s must be at least one bucket ({bucket_us // 1_000_000} s), got {window_s}")
        self.window_s, self.min_requests, self.bucket_us = window_s, min_requests, bucket_us
        self._n = window_s * 1_000_000 // bucket_us
        self._rings: dict[str, _Ring] = {}

    def record(self, model: str, failed: bool, at_us: int) -> None:
        """One answered request of `model` (a catalogue id: the caller keeps unknown names out, so
        memory stays bounded by the catalogue)."""
        ring = self._rings.get(model)
        if ring is None:
            ring = self._rings[model] = _Ring(self._n)
        b = at_us // self.bucket_us
        i = b % self._n
        if ring.bucket[i] != b:
            if ring.bucket[i] > b:
                return  # older than the window (a late settlement across a whole window): dropped
            ring.bucket[i], ring.ok[i], ring.failed[i] = b, 0, 0
        if failed:
            ring.failed[i] += 1
        else:
            ring.ok[i] += 1

    def answered(self, model: str, status: int, at_us: int) -> None:
        """Count an HTTP answer by its status, as OpenRouter does (a 4xx not at all)."""
        failed = is_failure(status)
        if failed is not None:
            self.record(model, failed, at_us)

    def of(self, model: str, now_us: int) -> Uptime:
        ring = self._rings.get(model)
        ok = failed = 0
        if ring is not None:
            newest = now_us // self.bucket_us
            for b, o, f in zip(ring.bucket, ring.ok, ring.failed, strict=True):
                if newest - self._n < b <= newest:
                    ok += o
                    failed += f
        return Uptime(ok + failed, failed, self.window_s, self.min_requests)

