"""Each model's uptime as OpenRouter counts it (backend/metrics/uptime.py), on plain numbers: 5xx
and broken streams fail, 4xx are not counted, the window rolls, and below the threshold there is no
figure."""

from __future__ import annotations

import pytest

from backend.metrics.uptime import UptimeWindow, is_failure

MIN = 60_000_000
T0 = 1_000 * 30 * MIN  # a bucket boundary


@pytest.mark.parametrize(("status", "counted"), [(200, False), (204, False), (500, True), (502, True), (503, True),
                                                 (504, True), (400, None), (401, None), (402, None), (404, None),
                                                 (413, None), (422, None), (429, None)])
def test_statuses_count_as_openrouter_counts_them(status, counted):
    assert is_failure(status) is counted


def test_4xx_answers_are_not_counted_at_all():
    w = UptimeWindow(window_s=1800, min_requests=2)
    for status in (200, 200, 429, 400, 413, 503):
        w.answered("m", status, T0)
    u = w.of("m", T0)
    assert (u.requests, u.failures, u.ratio) == (3, 1, pytest.approx(2 / 3))


def test_no_figure_below_the_threshold_then_one():
    w = UptimeWindow(window_s=1800, min_requests=100)
    for i in range(99):
        w.record("m", failed=i < 3, at_us=T0 + i * 1_000_000)
    u = w.of("m", T0 + 99 * 1_000_000)
    assert (u.requests, u.failures, u.shown, u.ratio) == (99, 3, False, None)
    w.record("m", failed=False, at_us=T0 + 99 * 1_000_000)
    u = w.of("m", T0 + 99 * 1_000_000)
    assert (u.requests, u.shown, u.ratio) == (100, True, 0.97)


def test_the_window_rolls_and_old_minutes_drop_out():
    w = UptimeWindow(window_s=1800, min_requests=1)
    w.record("m", failed=True, at_us=T0)  # minute 0
    for minute in range(1, 30):
        w.record("m", failed=False, at_us=T0 + minute * MIN + 5)
    assert w.of("m", T0 + 29 * MIN).requests == 30 and w.of("m", T0 + 29 * MIN).failures == 1
    # At minute 30 the failure's minute has left the 30-minute window (its slot is reused).
    assert (w.of("m", T0 + 30 * MIN).requests, w.of("m", T0 + 30 * MIN).failures) == (29, 0)
    w.record("m", failed=False, at_us=T0 + 30 * MIN)
    assert (w.of("m", T0 + 30 * MIN).requests, w.of("m", T0 + 30 * MIN).failures) == (30, 0)
    # An hour of silence empties it; nothing stale comes back when a slot is reused.
    assert w.of("m", T0 + 90 * MIN).requests == 0
    w.record("m", failed=True, at_us=T0 + 90 * MIN)
    assert (w.of("m", T0 + 90 * MIN).requests, w.of("m", T0 + 90 * MIN).failures) == (1, 1)


def test_models_are_apart_and_an_unseen_one_has_nothing():
    w = UptimeWindow(window_s=600, min_requests=1)
    w.record("a", failed=True, at_us=T0)
    w.record("b", failed=False, at_us=T0)
    assert w.of("a", T0).ratio == 0.0 and w.of("b", T0).ratio == 1.0
    assert (w.of("c", T0).requests, w.of("c", T0).ratio) == (0, None)


def test_a_settlement_older_than_the_window_is_dropped_not_counted_as_new():
    w = UptimeWindow(window_s=600, min_requests=1)
    w.record("m", failed=False, at_us=T0 + 10 * MIN)  # takes slot 0 (bucket % 10)
    w.record("m", failed=True, at_us=T0)  # the same slot, 10 minutes earlier
    u = w.of("m", T0 + 10 * MIN)
    assert (u.requests, u.failures) == (1, 0)


def test_a_window_shorter_than_a_bucket_is_refused():
    with pytest.raises(ValueError, match="window_s"):
        UptimeWindow(window_s=30)
