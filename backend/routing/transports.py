"""How the Forwarder reaches an engine: over the network (aiohttp, production) or in-process.

A transport's `send(replica, path, body)` returns an awaitable of an upstream response with
aiohttp's ClientResponse surface, the part of it the router reads: `status`, `headers`,
`read()`, `content.readany()`, `release()`, `close()`. The aiohttp transport hands back aiohttp's
own response, so production forwarding costs what it cost before there were transports (one
function call, no wrapper per request). The in-process transport calls a handler with no socket:
the simulation routes through the same forwarding code to simulated engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from backend.fleet.registry import Replica


class UpstreamContent(Protocol):
    async def readany(self) -> bytes: ...


class UpstreamResponse(Protocol):
    """What the router reads of an engine's answer (a subset of aiohttp.ClientResponse)."""

    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> UpstreamContent: ...

    async def read(self) -> bytes: ...

    def release(self) -> object: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def send(self, replica: Replica, path: str, body: bytes) -> Awaitable[UpstreamResponse]: ...


class AiohttpTransport:
    """One pooled aiohttp session for every upstream call: keep-alive connections to each engine,
    the host's engine key in the headers and its certificate pin (both built once per host,
    backend/fleet/registry.py)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False,
                                              skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send(self, replica: Replica, path: str, body: bytes) -> Awaitable[UpstreamResponse]:
        # Not a coroutine: aiohttp's request context is awaited by the caller, so this adds no await.
        return self._session.post(replica.endpoint(path), data=body, headers=replica.headers,  # type: ignore[union-attr]
                                  ssl=replica.ssl)


@dataclass(slots=True)
class LocalReply:
    """An in-process engine's answer: a whole body, or a stream of bytes (SSE events) after the
    status and headers. A stream that raises ConnectionError is an engine that broke mid-way."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


# (path, body, headers the router sends: the host's engine key among them) -> the engine's answer.
Handler = Callable[[str, bytes, Mapping[str, str]], Awaitable[LocalReply]]


class LocalResponse:
    """A LocalReply with the upstream response surface the router reads."""

    __slots__ = ("_body", "_stream", "content", "headers", "status")

    def __init__(self, reply: LocalReply) -> None:
        self.status = reply.status
        self.headers = CIMultiDictProxy(CIMultiDict(reply.headers))
        self._body = reply.body
        self._stream = reply.stream
        self.content = self  # content.readany(), as aiohttp's StreamReader

    async def readany(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        if self._body:
            body, self._body = self._body, b""
            return body
        if self._stream is None:
            return b""
        try:
            return await anext(self._stream, b"")
        except ConnectionError:
            raise
        except Exception as exc:  # an engine that crashed is one the connection to which broke
            raise ConnectionResetError(f"the in-process engine failed: {exc!r}") from exc

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine's work (as closing the connection does): the stream is closed."""
        stream, self._stream = self._stream, None
        if stream is not None and hasattr(stream, "aclose"):
            # aclose() of an async generator runs its cleanup; done in a task since close() is sync.
            task = asyncio.get_running_loop().create_task(stream.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task] = set()  # strong references until the closes finish


class InProcessTransport:
    """Calls a handler per replica in this process, with no socket. `resolve(replica)` returns the
    replica's handler, or None for a replica with no engine behind it (the connection is refused)."""

    def __init__(self, resolve: Callable[[Replica], Handler | None]) -> None:
        self._resolve = resolve

    @classmethod
    def by_url(cls, handlers: Mapping[str, Handler]) -> InProcessTransport:
        """Handlers keyed by the engine base URL the host reported (Replica.url)."""
        return cls(lambda replica: handlers.get(replica.url))

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*_closing)

    async def send(self, replica: Replica, path: str, body: bytes) -> UpstreamResponse:
        handler = self._resolve(replica)
        if handler is None:
            raise ConnectionRefusedError(f"no in-process engine at {replica.url}")
        try:
            reply = await handler(path, body, replica.headers)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:
            raise ConnectionResetError(f"the in-process engine failed: {exc!r}") from exc
        return LocalResponse(reply)
