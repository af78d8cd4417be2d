"""`tokenmill serve`: the backend headless, Litestar on uvicorn (uvloop, httptools with the limits of
backend/http_limits.py, no access log)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

import uvicorn

from backend.app import Services, create_app
from backend.http_limits import HttpLimits, limited_protocol
from backend.runtime.gc_tuning import tune_gc
from backend.settings import Settings

log = logging.getLogger(__name__)


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind first, so that port 0 works and the address is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: uvicorn re-raises SIGTERM once it has stopped, which
    would end the process before `serve` stops the local fleet and closes the ledger."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def shutdown(self, sockets=None) -> None:
        # uvicorn waits for every open response before it stops: end the live event streams
        # (GET /admin/events/stream) first, or an attached console would hold the shutdown.
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:
            services.bus.close()
        await super().shutdown(sockets)


def uvicorn_server(app, *, log_level: str = "warning", limits: HttpLimits | None = None) -> uvicorn.Server:
    limits = limits or HttpLimits()
    config = uvicorn.Config(app, loop="none", http=limited_protocol(limits), access_log=False, log_config=None,
                            log_level=log_level.lower(), lifespan="on", timeout_keep_alive=limits.keep_alive_s,
                            server_header=False, date_header=False, backlog=2048)
    return _Server(config)


async def serve(settings: Settings, *, local: bool = False, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled or signalled. With `local`, also run the embedded simulated fleet
    and synthetic client traffic (child processes, so the router's loop only routes)."""
    if local:
        from backend.localfleet.demo_settings import local_demo_settings

        settings = local_demo_settings(settings)  # the autoscaler on, fast loops: before anything reads them
    services = await Services.start(settings)
    app = create_app(settings, services=services)
    sock = listen_socket(settings.admin_host, settings.admin_port)
    address = f"http://{settings.admin_host}:{sock.getsockname()[1]}"
    server = uvicorn_server(app, limits=HttpLimits.from_settings(settings))
    fleet = None
    try:
        if local:
            from backend.localfleet.local_fleet import LocalFleet

            services.simulated = True
            fleet = LocalFleet(settings, services, address)
            await fleet.start()
        tune_gc()
        log.info("serving on %s%s", address, " with the local simulated fleet" if local else "")
        print(f"tokenmill serving on {address}" + (" (SIMULATED local fleet and traffic)" if local else ""),
              flush=True)
        if ready is not None:
            ready.set()
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task] = []

        async def shutdown() -> None:
            # The autoscaler first, so that hosts leaving is not taken for lost capacity to rent
            # back; then the local fleet, while the router still answers: its agents drain and
            # deregister through the host API. Then the server.
            await services.autoscaler.close()
            if fleet is not None:
                await fleet.stop()
            server.should_exit = True

        def on_signal() -> None:
            if stopping:
                server.force_exit = True  # a second signal: stop now
            else:
                stopping.append(asyncio.create_task(shutdown()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        watcher = asyncio.create_task(_stop_with_parent(on_signal)) if os.environ.get(STOP_WITH_PARENT) else None
        try:
            await server.serve(sockets=[sock])
        finally:
            if watcher is not None:
                watcher.cancel()
    finally:
        if fleet is not None:
            await fleet.stop()
        await services.close()
        sock.close()


# Set by a console that started this backend: when that console is gone (its terminal closed,
# or it was killed), this backend stops too, draining its simulated hosts.
STOP_WITH_PARENT = "TOKENMILL_STOP_WITH_PARENT"


async def _stop_with_parent(stop) -> None:
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells us; poll once a second
        await asyncio.sleep(1.0)  # real I/O: the operating system's process table
    log.info("the console that started this backend is gone; stopping")
    stop()


def run(settings: Settings, *, local: bool = False) -> int:
    try:
        import uvloop

        uvloop.run(serve(settings, local=local))
    except ImportError:
        asyncio.run(serve(settings, local=local))
    except KeyboardInterrupt:
        pass
    return 0
