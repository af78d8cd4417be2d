"""Live traffic figures for the last hour, per minute and per model: what the console's overview,
sparklines and per-model rates are drawn from.

Every metered request passes through `record()` once (the proxy calls it where it settles), so
the figures agree with the ledger. It is on the hot path: a few dictionary updates, no I/O, no
allocation beyond a minute's first request. Latencies go into log-spaced histogram buckets (5%
apart), so a percentile over any span of minutes is a merge of at most a few hundred counters
and is accurate to within 5%.

Memory is bounded: 61 minutes are kept; older ones are dropped as time moves on. On start-up the
last hour is replayed from the usage events (`backend.metrics.restore`), so a restart does not
blank the sparklines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MINUTE_US = 60_000_000
KEEP_MINUTES = 61  # the last hour plus the minute in progress
_LOG_STEP = math.log(1.05)
_MIN_US = 100  # latencies below 0.1 ms share the first bucket


def bucket_of(us: int) -> int:
    return 0 if us <= _MIN_US else int(math.log(us / _MIN_US) / _LOG_STEP) + 1


def bucket_value_us(bucket: int) -> float:
    """A representative latency for a bucket (its geometric middle)."""
    return _MIN_US if bucket == 0 else _MIN_US * math.exp((bucket - 0.5) * _LOG_STEP)


@dataclass(slots=True)
class Counts:
    """What happened in one minute (for one model, or for all of them)."""

    requests: int = 0  # answered, client errors apart
    failed: int = 0  # the service's failures: 5xx, an engine lost, no capacity
    client_errors: int = 0  # refused as the client's error (4xx): bad input, key, credit, rate limit
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    revenue: int = 0  # nano-USD charged to clients
    payouts: int = 0  # nano-USD owed to community hosts
    fees: int = 0  # nano-USD owed to the channel a request came through (OpenRouter's fee)
    busy_us: int = 0  # sum of request durations: busy_us / window = mean concurrency
    latency: dict[int, int] = field(default_factory=dict)  # histogram bucket -> count
    ttft: dict[int, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.client_errors += other.client_errors
        self.cancelled += other.cancelled
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.revenue += other.revenue
        self.payouts += other.payouts
        self.fees += other.fees
        self.busy_us += other.busy_us
        for src, dst in ((other.latency, self.latency), (other.ttft, self.ttft)):
            for b, n in src.items():
                dst[b] = dst.get(b, 0) + n

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def percentile_ms(hist: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, in milliseconds; None when it is empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return bucket_value_us(b) / 1000
    return None  # pragma: no cover - rank <= total


class LiveMetrics:
    def __init__(self) -> None:
        # minute index (µs // MINUTE_US) -> model -> Counts
        self._minutes: dict[int, dict[str, Counts]] = {}
        self._newest = 0
        self.first_us: int | None = None  # the earliest request seen: rates divide by time observed

    def record(self, *, model: str, status: str, prompt_tokens: int, completion_tokens: int, charged: int,
               host_share: int, started_us: int, first_byte_us: int | None, finished_us: int,
               requests: int = 1, fee: int = 0) -> None:
        """`status`: the usage event's ("ok", "failed", "cancelled"), or "rejected": the engine
        refused the request as the client's error (its usage event says "failed"). `requests`: how
        many requests the figures sum (a simulation's batch), each taking the same time."""
        if self.first_us is None or started_us < self.first_us:
            self.first_us = started_us
        c = self._counts(finished_us, model)
        if c is None:
            return
        if status == "rejected":
            c.client_errors += requests
            return
        c.requests += requests
        if status == "failed":
            c.failed += requests
        elif status == "cancelled":
            c.cancelled += requests
        c.prompt_tokens += prompt_tokens
        c.completion_tokens += completion_tokens
        c.revenue += charged
        c.payouts += host_share
        c.fees += fee
        took = max(finished_us - started_us, 0)
        c.busy_us += took * requests
        if status == "ok":  # a failure's latency is the timeout's, not the service's
            b = bucket_of(took)
            c.latency[b] = c.latency.get(b, 0) + requests
            if first_byte_us is not None:
                b = bucket_of(max(first_byte_us - started_us, 0))
                c.ttft[b] = c.ttft.get(b, 0) + requests

    def refused(self, *, client: bool, at_us: int) -> None:
        """A request answered with an error before it reached an engine: the client's (`client`,
        a 4xx) or the service's (no capacity, metering down). Counted under no model (key "")."""
        if self.first_us is None or at_us < self.first_us:
            self.first_us = at_us
        c = self._counts(at_us, "")
        if c is None:
            return
        if client:
            c.client_errors += 1
        else:
            c.requests += 1
            c.failed += 1

    def _counts(self, at_us: int, model: str) -> Counts | None:
        minute = at_us // MINUTE_US
        per_model = self._minutes.get(minute)
        if per_model is None:
            if minute < self._newest - KEEP_MINUTES:
                return None  # older than anything kept (a replay of old events)
            per_model = self._minutes[minute] = {}
            if minute > self._newest:
                self._newest = minute
                self._trim()
        c = per_model.get(model)
        if c is None:
            c = per_model[model] = Counts()
        return c

    def _trim(self) -> None:
        oldest = self._newest - KEEP_MINUTES
        for m in [m for m in self._minutes if m <= oldest]:
            del self._minutes[m]

    # ------------------------------------------------------------------ reading
    def window(self, since_us: int, until_us: int, model: str | None = None) -> Counts:
        """Counts over whole minutes: those that end after `since_us` and start before `until_us`."""
        total = Counts()
        for minute in range(since_us // MINUTE_US, (until_us - 1) // MINUTE_US + 1):
            per_model = self._minutes.get(minute)
            if not per_model:
                continue
            if model is None:
                for c in per_model.values():
                    total.add(c)
            elif model in per_model:
                total.add(per_model[model])
        return total

    def per_model(self, since_us: int, until_us: int) -> dict[str, Counts]:
        out: dict[str, Counts] = {}
        for minute in range(since_us // MINUTE_US, (until_us - 1) // MINUTE_US + 1):
            for name, c in (self._minutes.get(minute) or {}).items():
                out.setdefault(name, Counts()).add(c)
        return out

    def series(self, until_us: int, minutes: int = 60, model: str | None = None) -> list[tuple[int, Counts]]:
        """(minute start µs, counts) for the `minutes` whole minutes up to and including the one
        in progress at `until_us`, oldest first; minutes with no traffic are zeros."""
        last = until_us // MINUTE_US
        out = []
        for minute in range(last - minutes + 1, last + 1):
            per_model = self._minutes.get(minute) or {}
            c = Counts()
            for name, counts in per_model.items():
                if model is None or name == model:
                    c.add(counts)
            out.append((minute * MINUTE_US, c))
        return out
