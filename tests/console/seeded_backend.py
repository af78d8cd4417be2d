"""A real backend (router, ledger, admin API over HTTP) holding a deterministic day
(backend.localfleet.demo_seed) with its clock fixed, served from a thread of its own so that a
synchronous snapshot test can point the console's real admin client at it.

It listens on a Unix socket, so the URL in the console's header is the same on every run (a TCP
port would differ)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from backend.app import Services, create_app
from backend.localfleet.demo_seed import DEMO_NOW_US, seed_demo
from backend.runtime.clock import set_fixed_clock
from backend.server import uvicorn_server
from backend.settings import AutoscalerSettings, PricingSettings, Settings
from console.client import AdminClient

__all__ = ["DEMO_NOW_US", "URL", "seeded_backend"]
URL = "http://seeded-backend:8640"


@contextlib.contextmanager
def seeded_backend(data_dir: Path) -> Iterator[Callable[[], AdminClient]]:
    """Yields a factory of admin clients connected to it. The clock stays fixed at DEMO_NOW_US
    while it runs."""
    ready = threading.Event()
    state: dict = {}
    # Short: a Unix socket path must fit in 108 bytes, and pytest's tmp paths can be long.
    path = str(Path(tempfile.mkdtemp(prefix="tm-")) / "admin.sock")

    async def serve() -> None:
        # Hosts are heard once, at seeding: a long heartbeat interval keeps them up meanwhile. Pricing
        # and the autoscaler (on, to show what it wants) decide hourly: never while the tests run, so
        # what they show is the seeded day's, not the result of a run at some real instant.
        settings = Settings(data_dir=data_dir, heartbeat_interval_s=3600, pricing=PricingSettings(interval_s=3600),
                            autoscaler=AutoscalerSettings(enabled=True, interval_s=3600))
        set_fixed_clock(DEMO_NOW_US - 10 * 3_600_000_000)  # the backend starts at 05:00, before the day's traffic
        services = await Services.start(settings)
        try:
            await seed_demo(services)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(128)
            server = uvicorn_server(create_app(settings, services=services))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            state.update(token=services.admin_token, server=server, loop=asyncio.get_running_loop())
            ready.set()
            await task
            sock.close()
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise
        finally:
            await services.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="seeded-backend", daemon=True)
    thread.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the seeded backend did not start in 60 s")
        if "error" in state:
            raise RuntimeError("the seeded backend failed to start") from state["error"]
        yield lambda: AdminClient(URL, state["token"], transport=httpx.AsyncHTTPTransport(uds=path))
    finally:
        if "loop" in state:
            state["loop"].call_soon_threadsafe(setattr, state["server"], "should_exit", True)
        thread.join(30)
        set_fixed_clock(None)
