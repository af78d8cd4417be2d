"""The live counters behind the console's overview: percentiles, windows, bounded memory."""

from __future__ import annotations

import random

from backend.metrics.live import KEEP_MINUTES, MINUTE_US, LiveMetrics, percentile_ms

T0 = 1_800_000_000 * 1_000_000  # a fixed UTC instant, µs


def _req(m: LiveMetrics, finished_us: int, *, took_us: int = 50_000, ttft_us: int | None = 10_000,
         status: str = "ok", model: str = "a", charged: int = 100, share: int = 0) -> None:
    started = finished_us - took_us
    m.record(model=model, status=status, prompt_tokens=10, completion_tokens=5, charged=charged, host_share=share,
             started_us=started, first_byte_us=None if ttft_us is None else started + ttft_us, finished_us=finished_us)


def test_percentiles_are_within_five_percent_of_exact():
    rng = random.Random(7)
    m = LiveMetrics()
    took = [int(rng.lognormvariate(11, 1)) for _ in range(5000)]  # ~60 ms median, long tail
    for t in took:
        _req(m, T0, took_us=t)
    c = m.window(T0, T0 + 1)
    took.sort()
    for q in (0.5, 0.9, 0.99):
        exact = took[int(q * len(took)) - 1] / 1000
        assert abs(percentile_ms(c.latency, q) - exact) <= 0.05 * exact + 0.01


def test_failures_count_but_do_not_shape_latency():
    m = LiveMetrics()
    _req(m, T0, took_us=20_000)
    _req(m, T0, took_us=30_000_000, status="failed", charged=0)  # a timeout
    _req(m, T0, took_us=40_000, status="cancelled", ttft_us=None)
    c = m.window(T0, T0 + 1)
    assert (c.requests, c.failed, c.cancelled, c.revenue) == (3, 1, 1, 200)
    assert percentile_ms(c.latency, 1.0) < 50  # the 30 s failure is not in it
    assert sum(c.ttft.values()) == 1  # the cancelled request's first byte was not recorded


def test_windows_and_series_per_minute_and_model():
    m = LiveMetrics()
    for i in range(10):  # one request a minute, alternating models
        _req(m, T0 + i * MINUTE_US, model="a" if i % 2 else "b", charged=i)
    now = T0 + 9 * MINUTE_US
    assert m.window(T0, now + 1).requests == 10
    assert m.window(T0 + 5 * MINUTE_US, now + 1, "a").revenue == 5 + 7 + 9
    assert set(m.per_model(T0, now + 1)) == {"a", "b"}
    series = m.series(now, minutes=12)
    assert [c.requests for _, c in series] == [0, 0] + [1] * 10
    assert series[-1][0] == now - now % MINUTE_US
    b = m.series(now, minutes=10, model="b")  # model b had the even minutes
    assert [c.requests for _, c in b] == [1, 0] * 5
    assert [c.revenue for _, c in b] == [0, 0, 2, 0, 4, 0, 6, 0, 8, 0]


def test_memory_is_bounded_to_the_last_hour():
    m = LiveMetrics()
    for i in range(500):
        _req(m, T0 + i * MINUTE_US)
    assert len(m._minutes) <= KEEP_MINUTES
    _req(m, T0)  # an event older than anything kept (a late replay) is ignored, not resurrected
    assert len(m._minutes) <= KEEP_MINUTES and m.window(T0, T0 + 1).requests == 0
