"""The Clients view marks a client as the OpenRouter channel and back (`o`, confirmed; refused
read-only), shows the channel, and the backend's settlement follows it."""

from __future__ import annotations

import pytest

from console.widgets.confirm import ConfirmScreen
from tests.console.test_pilot import goto, make_app, wait_for
from tests.router_harness import router_settings, running_router


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


@pytest.fixture
async def client_key(router):
    return await router.client_with_key("acme", "10.00")


async def _channel(at, client_id: str) -> str:
    r = await at.http.get("/admin/clients", headers=at.admin)
    return next(c["channel"] for c in r.json() if c["id"] == client_id)


def _cell(app) -> str:
    return app.view.table.get_row_at(0)[app.view.columns.index("channel")].plain


async def test_o_switches_the_client_to_openrouter_and_back_once_confirmed(router, client_key):
    client_id, _ = client_key
    app = make_app(router)
    async with app.run_test(size=(120, 40)) as pilot:
        await goto(pilot, "clients")
        assert _cell(app) == "direct"
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # declined: nothing changes
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert await _channel(router, client_id) == "direct"
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: _cell(app) == "openrouter")
        assert await _channel(router, client_id) == "openrouter"
        assert router.services.clients.channel_of(client_id) == "openrouter"  # what the settlement reads
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: _cell(app) == "direct")
        assert await _channel(router, client_id) == "direct"


async def test_read_only_refuses_to_switch(router, client_key):
    client_id, _ = client_key
    app = make_app(router, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await goto(pilot, "clients")
        await pilot.press("o")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert await _channel(router, client_id) == "direct"
