"""Backoff, jitter, Retry-After and which failures are repeated (no HTTP here: see integration)."""

from __future__ import annotations

import email.utils
import itertools
import random
import time

import pytest

from backend.fleet.providers.errors import InvalidRequest, OfferTaken, ProviderUnavailable, RateLimited
from backend.fleet.providers.retry import RetryPolicy, parse_retry_after, with_retries

QUICK = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.04, total_s=5.0, jitter=0.0)


class Script:
    """An operation that raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def down(maybe_applied: bool = False) -> ProviderUnavailable:
    return ProviderUnavailable("runpod", "RunPod failed (503)", maybe_applied=maybe_applied, status=503)


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, jitter=0.0)
    assert [policy.backoff(n, random.Random(1)) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter=0.5)
    rng = random.Random(7)
    waits = [jittered.backoff(3, rng) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits) and max(waits) - min(waits) > 1.0


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (" 0 ", 0.0), ("1.5", 1.5), ("-3", 0.0),
                                                 (None, None), ("", None), ("soon", None)])
def test_retry_after_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date():
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 120, usegmt=True), now=now) == pytest.approx(120)
    assert parse_retry_after(email.utils.formatdate(now - 120, usegmt=True), now=now) == 0.0


async def test_retryable_errors_are_repeated_until_success():
    op = Script(down(), RateLimited("vast", "slow down"), down())
    assert await with_retries(op, QUICK, what="x") == "done"
    assert len(op.calls) == 4
    waits = [b - a for a, b in itertools.pairwise(op.calls)]
    assert waits[0] >= 0.0095 and waits[1] >= 0.019 and waits[2] >= 0.038


@pytest.mark.parametrize("error", [OfferTaken("vast", "gone"), InvalidRequest("lambda", "bad region")])
async def test_other_errors_are_not_repeated(error):
    op = Script(error)
    with pytest.raises(type(error)):
        await with_retries(op, QUICK, what="x")
    assert len(op.calls) == 1


async def test_a_failure_that_may_have_been_applied_is_repeated_only_if_idempotent():
    op = Script(down(maybe_applied=True))
    with pytest.raises(ProviderUnavailable):
        await with_retries(op, QUICK, what="create", idempotent=False)
    assert len(op.calls) == 1
    op = Script(down(maybe_applied=False))
    assert await with_retries(op, QUICK, what="create", idempotent=False) == "done"
    op = Script(down(maybe_applied=True))
    assert await with_retries(op, QUICK, what="read") == "done"


async def test_gives_up_after_the_attempts_and_says_so():
    op = Script(*[down() for _ in range(10)])
    with pytest.raises(ProviderUnavailable) as info:
        await with_retries(op, QUICK, what="x")
    assert len(op.calls) == QUICK.attempts and info.value.attempts == QUICK.attempts
    assert str(info.value) == "RunPod failed (503) (gave up after 4 attempts)"


async def test_retry_after_is_honoured_and_the_total_time_is_bounded():
    op = Script(RateLimited("lambda", "429", retry_after_s=0.2))
    await with_retries(op, QUICK, what="x")
    assert op.calls[1] - op.calls[0] >= 0.19
    op = Script(RateLimited("lambda", "429", retry_after_s=60))
    started = time.monotonic()
    with pytest.raises(RateLimited):
        await with_retries(op, QUICK, what="x")  # 60 s is past total_s: report now, do not sleep
    assert time.monotonic() - started < 1 and len(op.calls) == 1
