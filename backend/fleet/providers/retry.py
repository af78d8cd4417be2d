"""Bounded retries with exponential backoff and jitter, honouring Retry-After.

Only `retryable` errors are repeated (429, 5xx, timeouts, failed connections). An operation that
is not idempotent (renting a machine) is never repeated after an error that may have been
applied by the provider: the caller must first find out whether it was (see http_api.py, create).
"""

from __future__ import annotations

import email.utils
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from backend.fleet.providers.errors import ProviderError, RateLimited, label
from backend.runtime.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first try included
    base_delay_s: float = 0.5  # wait before the second try; doubles each time
    max_delay_s: float = 8.0
    total_s: float = 60.0  # never wait past this much time since the first try
    jitter: float = 0.5  # each wait is drawn from [delay * (1 - jitter), delay]

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait after the n-th consecutive failure (n >= 1)."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))
        # Jitter spreads retries of many callers (several backend replicas) that failed together.
        return delay * (1 - self.jitter * rng.random())


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110).
    `now`: the caller's clock, in seconds since the epoch (the real clock when not given)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (REAL_CLOCK.now_us() / 1_000_000 if now is None else now))


async def with_retries(op: Callable[[], Awaitable[T]], policy: RetryPolicy, *, what: str, idempotent: bool = True,
                       rng: random.Random | None = None, clock: Clock = REAL_CLOCK) -> T:
    """Run `op`, repeating it after retryable failures within the policy's attempts and time."""
    rng = rng or random.Random()
    started = clock.monotonic()
    failures = 0
    while True:
        try:
            return await op()
        except ProviderError as err:
            failures += 1
            err.attempts = failures
            if not err.retryable or (err.maybe_applied and not idempotent) or failures >= policy.attempts:
                raise
            delay = policy.backoff(failures, rng)
            if isinstance(err, RateLimited) and err.retry_after_s is not None:
                delay = max(delay, err.retry_after_s)
            if clock.monotonic() - started + delay > policy.total_s:
                raise
            log.warning("%s: %s failed (%s); retrying in %.2f s (attempt %d of %d)",
                        label(err.provider), what, err.message, delay, failures + 1, policy.attempts)
            await clock.sleep(delay)
