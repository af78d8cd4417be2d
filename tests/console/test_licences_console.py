"""Model licences in the console, driven by keys (App.run_test) against a real router on loopback:
the Models drill-down shows the licence with how many clients accepted it; `l` on Models turns the
acknowledgement off and on for a model; `l` on Clients accepts a model's licence for the client
picked from those it needs; each confirmed, each refused read-only, each effect read back through
the admin API and the client's own requests."""

from __future__ import annotations

import openai
import pytest
from rich.console import Console
from textual.widgets import Static

from console.widgets.confirm import ConfirmScreen
from console.widgets.help import HelpScreen
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen
from tests.console.test_models_pricing import confirm, notes, select
from tests.console.test_pilot import MODEL, OTHER, SIZE, admin_get, goto, make_app, rows, wait_for
from tests.router_harness import router_settings, running_router

LLAMA_LICENCE = "Llama 3.1 Community License Agreement"


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER])
        yield r


def text_of(static: Static) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(static.content)
    return " ".join(console.export_text().split())


async def served(router, secret: str) -> bool:
    """Whether the client's request for MODEL is served (False: 403 licence_not_accepted)."""
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        return True
    except openai.PermissionDeniedError as exc:
        assert exc.response.json()["error"]["code"] == "licence_not_accepted"
        return False
    finally:
        await sdk.close()


async def test_drill_down_shows_the_licence_and_l_turns_the_acknowledgement_off_then_on(router):
    await router.client_with_key("acme")  # accepted every licence
    _, secret = await router.client_with_key("globex", accept_licences=False)
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "models")
        await select(pilot, MODEL)
        await pilot.press("enter")
        licence = app.view.query_one("#detail-licence", Static)
        await wait_for(pilot, lambda: LLAMA_LICENCE in text_of(licence))
        text = text_of(licence)
        for part in ("version llama3.1", "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE",
                     "commercial use RESTRICTED", "700 million monthly active users", "notice Built with Llama",
                     "REQUIRED before a client's first request (the catalogue's default)",
                     "1 client accepted version llama3.1"):
            assert part in text, (part, text)
        assert not await served(router, secret)

        await pilot.press("l")  # from the drill-down: the model drilled into
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Stop asking clients to acknowledge the Llama 3.1" in app.screen.question
        await confirm(pilot)

        async def exempt() -> bool:
            return not (await admin_get(router, f"/models/{MODEL}/licence"))["requires_acceptance"]

        await wait_for(pilot, exempt)
        assert await served(router, secret)  # the client that never accepted is served now
        await wait_for(pilot, lambda: "not required (set by the operator" in text_of(licence))
        assert (await admin_get(router, f"/models/{OTHER}/licence"))["requires_acceptance"] is False  # untouched

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "403 licence_not_accepted" in app.screen.question
        await confirm(pilot)
        await wait_for(pilot, lambda: _not(exempt()))
        assert not await served(router, secret)
        await wait_for(pilot, lambda: "REQUIRED before a client's first request (set by the operator"
                       in text_of(licence))


async def test_l_on_clients_accepts_a_licence_for_the_client_picked_from_those_it_needs(router):
    client_id, secret = await router.client_with_key("globex", accept_licences=False)
    app = make_app(router)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "clients")
        await wait_for(pilot, lambda: rows(app) == [client_id])
        table = app.view.query_one("#licences")
        await wait_for(pilot, lambda: table.row_count > 0)
        states = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert states[MODEL] == "NEEDED" and OTHER not in states  # Apache-2.0 needs none
        assert "to accept, 0 accepted" in str(app.view.query_one("#licences-title", Static).content)

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        await pilot.press("escape")  # cancelled: nothing recorded
        await wait_for(pilot, lambda: not isinstance(app.screen, PickScreen))
        assert (await admin_get(router, f"/clients/{client_id}/licences"))["accepted"] == []

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        picker = app.screen.query_one("OptionList")
        options = [picker.get_option_at_index(i).id for i in range(picker.option_count)]
        assert MODEL in options and OTHER not in options
        picker.highlighted = options.index(MODEL)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = app.screen.question
        assert LLAMA_LICENCE in question and "version llama3.1" in question and "globex" in question
        await confirm(pilot)

        async def accepted() -> list[dict]:
            return (await admin_get(router, f"/clients/{client_id}/licences"))["accepted"]

        await wait_for(pilot, accepted)
        assert [(a["model"], a["version"], a["accepted_by"]) for a in await accepted()] == [
            (MODEL, "llama3.1", "operator")]
        assert await served(router, secret)
        await wait_for(pilot, lambda: any(str(table.get_row_at(i)[0]) == MODEL and
                                          str(table.get_row_at(i)[3]) == "accepted" and
                                          str(table.get_row_at(i)[5]) == "operator"
                                          for i in range(table.row_count)))
        assert "accepted" in notes(app)


async def test_readonly_refuses_both_licence_keys_and_help_lists_them(router):
    client_id, _ = await router.client_with_key("globex", accept_licences=False)
    app = make_app(router, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        for view in ("models", "clients"):
            await goto(pilot, view)
            shown = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
            assert "l" not in shown, view
            await pilot.press("l")
            await pilot.pause(0.05)
            assert not isinstance(app.screen, ConfirmScreen | PromptScreen | PickScreen), view
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            listed = {what for _, keys in app.screen.sections for _, what in keys}
            assert ("Licence ack on/off" if view == "models" else "Accept licence") in listed, listed
            await pilot.press("escape")
    assert (await admin_get(router, f"/models/{MODEL}/licence"))["requires_acceptance"] is True
    assert (await admin_get(router, f"/clients/{client_id}/licences"))["accepted"] == []


async def _not(result) -> bool:
    return not await result
