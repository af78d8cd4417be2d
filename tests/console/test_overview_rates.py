"""The overview's rates and per-minute bars: rates divide by the time the backend observed (not a
whole hour it was not running), a minute before it started is no data (not $0), and a loss reads
as a loss without colour."""

from __future__ import annotations

import time

import openai
import pytest

from console.client import AdminClient
from console.figures import rate
from console.views.overview import traffic_table
from console.widgets.minute_bars import HANGING, NO_DATA, RISING, bars
from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"


def row(table, label: str) -> str:
    labels = list(table.columns[0].cells)
    return str(list(table.columns[1].cells)[labels.index(label)])


async def test_rates_divide_by_the_time_observed(tmp_path):
    started = time.monotonic()
    async with running_router(router_settings(tmp_path)) as router:
        await router.add_host("rig-a", [MODEL])
        _, secret = await router.client_with_key("acme", "10.00")
        sdk = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=secret, max_retries=0)
        for _ in range(12):
            await sdk.chat.completions.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "hi"}])
        for _ in range(3):  # the client's mistakes: counted apart, never in the service's error rate
            with pytest.raises(openai.BadRequestError):
                await sdk.chat.completions.create(model=MODEL, max_tokens=3, temperature=5,
                                                  messages=[{"role": "user", "content": "hi"}])
        await sdk.close()
        api = AdminClient(router.url, router.services.admin_token)
        m = await api.metrics()
        await api.aclose()
    elapsed = time.monotonic() - started
    hour = m.hour
    assert hour.requests == 12
    # The backend ran for `elapsed` seconds of the hour: that, not 3,600 s, is what rates divide by.
    assert 0 < hour.observed_s <= elapsed + 1
    table = traffic_table(hour)
    assert row(table, "requests/s") == rate(12 / max(hour.observed_s, 1.0))
    assert row(table, "error rate") == "0.0%"
    assert hour.client_errors == 3 and row(table, "client errors/s") == rate(3 / max(hour.observed_s, 1.0))
    # Only the last minute or two of the series were observed; the earlier ones are not data.
    assert m.series.observed_from >= len(m.series.requests) - 2


def test_minute_bars_without_data_negative_and_positive():
    text = bars([None, None, -10, -2, 0, 5, 10]).plain
    assert text[:2] == NO_DATA * 2  # before the backend observed: nothing drawn, not $0
    assert text[2] in HANGING and text[3] in HANGING  # losses hang from the top, the larger lower
    assert text[2] == HANGING[-1] and text[3] == HANGING[0]
    assert text[4:] == RISING[0] + RISING[4] + RISING[-1]  # zero is the bottom; the peak is full


def test_all_losses_never_draw_a_full_rising_bar():
    text = bars([-5, -5, -1]).plain
    assert not set(text) & set(RISING)
