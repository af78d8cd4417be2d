"""The console's Events view follows the backend's live event stream (GET /admin/events/stream)
instead of polling, and follows it again after the backend restarts. Real router on loopback,
real admin client, the console driven by App.run_test."""

from __future__ import annotations

import asyncio
import contextlib

from backend.app import Services, create_app
from backend.server import listen_socket, uvicorn_server
from console.app import TokenmillApp
from console.client import AdminClient
from console.widgets.header import StatusHeader
from tests.console.test_pilot import SIZE, event_kinds, goto, wait_for
from tests.router_harness import router_settings, running_router


class CountingClient(AdminClient):
    """The real client, counting the polls of GET /admin/events."""

    polls = 0

    async def events(self, after: int = 0):
        self.polls += 1
        return await super().events(after)


async def test_the_events_view_shows_a_new_event_live_without_polling(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        api = CountingClient(router.url, router.services.admin_token)
        # No timed refresh after the first one: a new row can only come from the stream.
        app = TokenmillApp(api, refresh_s=3600, owns_api=True)
        async with app.run_test(size=SIZE) as pilot:
            await goto(pilot, "events")
            await wait_for(pilot, lambda: "backend.started" in event_kinds(app) and app.view.live)
            router.services.bus.add("test.live", "rig-a", "published after the view opened", "warning")
            await wait_for(pilot, lambda: "test.live" in event_kinds(app))
            r = await router.http.post("/admin/clients", json={"name": "Acme", "id": "acme"}, headers=router.admin)
            assert r.status_code == 201
            await wait_for(pilot, lambda: "client.created" in event_kinds(app))
            row = [str(c) for c in app.view.table.get_row_at(event_kinds(app).index("test.live"))]
            assert "WARNING" in row and "rig-a" in row
            assert api.polls == 1  # the first fetch; everything after came by the stream


@contextlib.asynccontextmanager
async def backend_on(settings, port: int):
    """A backend on a fixed port (as `tokenmill serve` on its configured one), stopped on exit."""
    services = await Services.start(settings)
    server = uvicorn_server(create_app(settings, services=services))
    sock = listen_socket("127.0.0.1", port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield services
    finally:
        server.should_exit = True
        await task
        await services.close()
        sock.close()


async def test_an_attached_console_shows_disconnected_then_follows_the_restarted_backend(tmp_path):
    settings = router_settings(tmp_path)
    probe = listen_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    first_cm = backend_on(settings, port)
    first = await first_cm.__aenter__()
    try:
        app = TokenmillApp(AdminClient(f"http://127.0.0.1:{port}", first.admin_token, timeout_s=2),
                           refresh_s=0.2, owns_api=True)
        async with app.run_test(size=SIZE) as pilot:
            header = app.query_one(StatusHeader)
            await goto(pilot, "events")
            await wait_for(pilot, lambda: app.view.live)
            first.bus.add("test.first_run", "rig-a", "before the restart")
            await wait_for(pilot, lambda: "test.first_run" in event_kinds(app))
            await first_cm.__aexit__(None, None, None)
            first_cm = None
            await wait_for(pilot, lambda: header.disconnected and not app.view.live)
            assert "DISCONNECTED" in str(header.render())
            async with backend_on(settings, port) as second:  # same data dir: same admin token
                await wait_for(pilot, lambda: not header.disconnected and app.view.live)
                # Its events are numbered from 1 again: both runs' rows are kept, none is lost.
                await wait_for(pilot, lambda: event_kinds(app).count("backend.started") == 2)
                second.bus.add("test.second_run", "rig-a", "after the restart")
                await wait_for(pilot, lambda: "test.second_run" in event_kinds(app))
                kinds = event_kinds(app)
                assert kinds.index("test.first_run") < kinds.index("test.second_run")
    finally:
        if first_cm is not None:
            await first_cm.__aexit__(None, None, None)
