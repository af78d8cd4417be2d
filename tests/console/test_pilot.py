"""The console driven by keys (App.run_test) against a real router on loopback: real HTTP, real
SQLite, the real admin client; effects are checked through the admin API and the OpenAI SDK."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from textual import events

from console.app import TokenmillApp
from console.client import AdminClient
from console.widgets.confirm import ConfirmScreen
from console.widgets.header import StatusHeader
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen
from console.widgets.secret import SecretScreen
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-0.5b-instruct"
SIZE = (120, 40)


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER], payout_share_bps=7000)
        yield r


@pytest.fixture
async def client_key(router):
    return await router.client_with_key("acme", "10.00")


def make_app(router, **kw) -> TokenmillApp:
    return TokenmillApp(AdminClient(router.url, router.services.admin_token), refresh_s=0.2, owns_api=True, **kw)


async def wait_for(pilot, predicate, limit_s: float = 10.0) -> None:
    """Poll (sync or async predicate) while letting the app run."""
    deadline = time.monotonic() + limit_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.02)


async def goto(pilot, view: str) -> None:
    app = pilot.app
    await pilot.press("colon", *view[:2], "enter")  # a unique prefix is enough (and quicker to type)
    await wait_for(pilot, lambda: app.query_one(StatusHeader).view == view)
    await wait_for(pilot, lambda: app.view_refreshes >= 1)  # the view's own data, fetched after the switch


def rows(app) -> list[str]:
    table = app.view.table
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def admin_get(router, path: str):
    r = await router.http.get("/admin" + path, headers=router.admin)
    r.raise_for_status()
    return r.json()


async def test_switch_views_with_colon_and_completion(router):
    app = make_app(router, simulated=True)
    async with app.run_test(size=SIZE) as pilot:
        header = app.query_one(StatusHeader)
        await wait_for(pilot, lambda: app.refreshes >= 1)
        assert header.view == "overview" and not header.disconnected
        assert "SIMULATED" in str(header.render())
        fleet_line = str(app.query_one("#overview #fleet").render())
        assert "hosts up 1/1" in fleet_line and "models enabled" in fleet_line
        # Tab accepts the inline completion.
        await pilot.press("colon", "f", "l", "tab", "enter")
        await wait_for(pilot, lambda: header.view == "fleet")
        await wait_for(pilot, lambda: rows(app) == ["rig-a"])
        # A unique prefix is enough.
        await pilot.press("colon", "m", "o", "enter")
        await wait_for(pilot, lambda: header.view == "models")
        await wait_for(pilot, lambda: {MODEL, OTHER} <= set(rows(app)))
        # Unknown view: stays put.
        await pilot.press("colon", "z", "z", "enter")
        await pilot.pause()
        assert header.view == "models"
        # `/` filters the table; Esc clears the filter.
        await pilot.press("slash", *"0.5b", "enter")
        assert rows(app) == [OTHER]
        await pilot.press("escape")
        assert {MODEL, OTHER} <= set(rows(app)) and len(rows(app)) > 2


async def test_keys_typed_in_one_go_reach_the_command_line(router):
    """":fleet⏎" pasted, or typed faster than the screen redraws, while a table has focus."""
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        for key, char in [("colon", ":"), *[(c, c) for c in "fleet"], ("enter", None)]:
            app.post_message(events.Key(key, char))  # all queued before the first is handled
        await wait_for(pilot, lambda: app.query_one(StatusHeader).view == "fleet")


async def test_hidden_views_do_not_refresh(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "fleet")
        calls: list[str] = []
        models_view = app.query_one("#models")
        original = models_view.refresh_data

        async def spy():
            calls.append("models")
            await original()

        models_view.refresh_data = spy
        seen = app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= seen + 3)
        assert calls == []


async def test_toggle_model_off_then_clients_get_404(router, client_key):
    _, secret = client_key
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await pilot.press("slash", *"1-8b", "enter")  # the filter puts the cursor on it
        assert rows(app) == [MODEL]
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")

        async def disabled():
            return not next(m for m in await admin_get(router, "/models") if m["id"] == MODEL)["enabled"]

        await wait_for(pilot, disabled)
        await wait_for(pilot, lambda: app.view.table.get_row_at(0)[1].plain == "NO")
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    finally:
        await sdk.close()


async def test_saying_no_changes_nothing(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "fleet")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        seen = app.refreshes  # the view underneath keeps refreshing while the modal is open
        await wait_for(pilot, lambda: app.refreshes >= seen + 2)
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
    assert (await admin_get(router, "/hosts"))[0]["status"] == "active"


async def test_q_in_a_dialog_closes_it_and_does_not_quit(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "fleet")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("q")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.2)
        assert app.is_running
    assert (await admin_get(router, "/hosts"))[0]["status"] == "active"  # q answered no


async def test_drill_down_refreshes_live_and_acts_on_its_row(router, client_key):
    """Enter on a host shows its detail, which keeps refreshing (it sees the drain it asked for);
    Esc goes back to the table."""
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "fleet")
        await pilot.press("enter")
        title = app.view.query_one("#detail-title")
        await wait_for(pilot, lambda: "rig-a" in str(title.render()) and "active" in str(title.render()))
        await pilot.press("d")  # in the detail, the view's keys act on the host shown
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: "drain" in str(title.render()))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.view.detail_key is None and app.view.table.has_focus)

        await goto(pilot, "models")
        _, secret = client_key
        await pilot.press("slash", *OTHER, "enter")
        await pilot.pause()
        await pilot.press("enter")
        rates = app.view.query_one("#detail-rates")
        await wait_for(pilot, lambda: "last 10 min: 0 req/s" in str(rates.render()))
        await router.services.fleet.resume(router.services.fleet.hosts()[0])
        client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
        await client.completions.create(model=OTHER, prompt="hi", max_tokens=4)
        await client.close()
        await wait_for(pilot, lambda: "last 10 min: 0 req/s" not in str(rates.render()))


async def test_drain_host(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "fleet")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")

        async def draining():
            return (await admin_get(router, "/hosts"))[0]["status"] in ("draining", "drained")

        await wait_for(pilot, draining)
        await wait_for(pilot, lambda: app.view.table.get_row_at(0)[2].plain in ("draining", "drained"))


async def test_revoke_key_then_the_key_gets_401(router, client_key):
    client_id, secret = client_key
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "clients")
        assert rows(app) == [client_id]
        await wait_for(pilot, lambda: len(app.view.keys) == 1)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")

        async def revoked():
            return all(k["revoked_us"] for k in await admin_get(router, f"/clients/{client_id}/keys"))

        await wait_for(pilot, revoked)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    finally:
        await sdk.close()


async def test_grant_credit_validates_the_amount(router, client_key):
    client_id, _ = client_key
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "clients")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"1.5e3", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)  # refused, still asking
        assert "decimal" in str(app.screen.query_one("#error").render())
        app.screen.query_one("#value").value = ""
        await pilot.press(*"2.50", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")

        async def granted():
            c = next(c for c in await admin_get(router, "/clients") if c["id"] == client_id)
            return c["balance_nano"] == 12_500_000_000

        await wait_for(pilot, granted)
        await wait_for(pilot, lambda: app.view.table.get_row_at(0)[3].plain == "$12.5000")  # after channel


async def test_names_that_look_like_markup_show_as_written(router):
    """Clients name themselves: "[/]" must neither stop the console (rich cannot parse it as
    markup) nor style anything, in the table, the keys' title or a dialog's question."""
    await router.client_with_key("[/]", "1.00")
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "clients")
        assert [str(app.view.table.get_row_at(0)[1])] == ["[/]"]
        await pilot.press("enter")  # the keys of that client
        await wait_for(pilot, lambda: "keys of [/]" in str(app.view.query_one("#keys-title").render()))
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert "[/]" in " ".join(str(s.render()) for s in app.screen.query("Static"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PromptScreen))
        assert app.is_running


async def test_issue_key_shows_the_secret_once_and_it_works(router, client_key):
    client_id, _ = client_key
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "clients")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, SecretScreen))
        secret = app.screen._secret
        assert secret
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SecretScreen))
        assert len(await admin_get(router, f"/clients/{client_id}/keys")) == 2
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        assert {m.id for m in (await sdk.models.list()).data} == {MODEL, OTHER}
    finally:
        await sdk.close()


async def test_readonly_refuses_every_action(router, client_key):
    app = make_app(router, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        assert "READONLY" in str(app.query_one(StatusHeader).render())
        for view, keys in (("models", "t"), ("fleet", "drx"), ("clients", "nkgc"), ("provision", "pskt")):
            await goto(pilot, view)
            # The footer offers none of them: only the keys that read.
            shown = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
            assert not shown & set(keys), (view, shown)
            assert "q" in shown
            for key in keys:
                await pilot.press(key)
                await pilot.pause(0.05)
                assert not isinstance(app.screen, ConfirmScreen | PromptScreen | PickScreen), (view, key)
    assert all(m["enabled"] for m in await admin_get(router, "/models"))
    assert (await admin_get(router, "/hosts"))[0]["status"] == "active"


async def test_events_view_lists_backend_events(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "events")
        await wait_for(pilot, lambda: app.view.table.row_count > 0)
        assert any("rig-a" in " ".join(map(str, app.view.table.get_row_at(i)))
                   for i in range(app.view.table.row_count))


async def test_disconnected_when_the_backend_is_gone():
    app = TokenmillApp(AdminClient("http://127.0.0.1:9", "tma-x", timeout_s=1), refresh_s=0.2, owns_api=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one(StatusHeader).disconnected)
        assert "DISCONNECTED" in str(app.query_one(StatusHeader).render())


async def test_enter_shows_the_whole_event_and_esc_goes_back(router):
    long = "why: " + "a reason that does not fit in the message column " * 4 + "END"
    router.services.events.add("test.long", "rig-a", long)
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "events")
        await wait_for(pilot, lambda: "test.long" in event_kinds(app))
        table = app.view.table
        row = event_kinds(app).index("test.long")
        table.move_cursor(row=row, animate=False)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.detail_key is not None)
        detail = app.view.query_one("#event")
        await wait_for(pilot, lambda: "END" in rendered_text(detail))
        text = rendered_text(detail)
        assert "test.long" in text and "rig-a" in text and "INFO" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.view.detail_key is None and app.focused is table)


async def test_an_active_filter_shows_on_the_top_line_and_esc_clears_it(router):
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "events")
        await wait_for(pilot, lambda: app.view.table.row_count > 1)
        everything = app.view.table.row_count
        await pilot.press("slash", *"rig-a", "enter")
        header = app.query_one(StatusHeader)
        assert "/rig-a" in str(header.render())
        assert 0 < app.view.table.row_count <= everything
        await pilot.press("escape")
        assert app.view.filter == "" and "/rig-a" not in str(header.render())
        assert app.view.table.row_count >= everything


async def test_models_say_kv_cache_and_keep_the_name_while_scrolling(router):
    app = make_app(router)
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "models")
        table = app.view.table
        labels = [str(c.label) for c in table.columns.values()]
        assert "KV cache" in labels and "GPU util" in labels and "util" not in labels
        assert table.fixed_columns == 1
        for _ in range(12):
            await pilot.press("right")
        await wait_for(pilot, lambda: table.scroll_x > 0)
        await pilot.pause()
        assert MODEL in rendered_text(table)  # the name column did not scroll away
        footer_keys = [k.key for k in app.query("FooterKey")]
        assert footer_keys[0] == "q"


def event_kinds(app) -> list[str]:
    table = app.view.table
    return [str(table.get_row_at(i)[3]) for i in range(table.row_count)]


def rendered_text(widget) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))
