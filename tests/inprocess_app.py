"""An aiohttp web app (the simulated engine's) as an in-process transport handler: the request is
handed to the app with no socket, and what the app writes comes back as the reply's stream.

Built on aiohttp's own test helper (make_mocked_request) and the app's request dispatch, which is
what aiohttp's server calls for each request; a test helper, so it lives with the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import StreamReader, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from backend.routing.transports import Handler, LocalReply

_END = object()


class _QueueWriter(AbstractStreamWriter):
    """Receives the app's response: the status line and headers once, then the body's pieces."""

    def __init__(self) -> None:
        self.head: asyncio.Future[tuple[int, CIMultiDict[str]]] = asyncio.get_running_loop().create_future()
        self.pieces: asyncio.Queue[object] = asyncio.Queue()

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        self.head.set_result((int(status_line.split()[1]), CIMultiDict(headers)))

    async def write(self, chunk) -> None:
        if chunk:
            self.pieces.put_nowait(bytes(chunk))

    async def write_eof(self, chunk: bytes = b"") -> None:
        await self.write(chunk)
        self.pieces.put_nowait(_END)

    async def drain(self) -> None:
        pass

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        pass

    def enable_chunking(self) -> None:
        pass  # pieces are kept apart already: no framing to add


class _NoFlowControl:
    """The request body is all there at once: nothing to pause."""

    def pause_reading(self, *args, **kwargs) -> None:
        pass

    def resume_reading(self, *args, **kwargs) -> None:
        pass


def app_handler(app: web.Application) -> Handler:
    async def handle(path: str, body: bytes, headers: Mapping[str, str]) -> LocalReply:
        loop = asyncio.get_running_loop()
        payload = StreamReader(_NoFlowControl(), len(body) + 1, loop=loop)  # type: ignore[arg-type]
        payload.feed_data(body)
        payload.feed_eof()
        writer = _QueueWriter()
        request = make_mocked_request("POST", path, headers={**headers, "Content-Length": str(len(body))},
                                      app=app, writer=writer, payload=payload)

        async def serve() -> None:
            resp = await app._handle(request)  # what aiohttp's server runs per request
            await resp.prepare(request)  # a whole web.Response is written only now
            await resp.write_eof()

        task = loop.create_task(serve())
        await asyncio.wait((task, writer.head), return_when=asyncio.FIRST_COMPLETED)
        if not writer.head.done():
            task.result()  # raises what the app raised
            raise ConnectionResetError("the app answered nothing")
        status, head = writer.head.result()

        async def stream() -> AsyncIterator[bytes]:
            try:
                while (piece := await writer.pieces.get()) is not _END:
                    yield piece  # type: ignore[misc]
                await task
            finally:  # the router stopped reading: the app's work stops, as when a connection closes
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

        return LocalReply(status, head, stream=stream())

    return handle
