"""The agent's side of the `/hosts/...` API (hostkit.protocol), over httpx.

Two kinds of failure, because the agent reacts differently: RouterUnreachable (network error,
timeout, 5xx: retry with back-off) and RouterRejected (4xx: the router understood and said no).
The host token only ever travels in the Authorization header; it is in no message or repr.
"""

from __future__ import annotations

from typing import TypeVar

import httpx
import msgspec

from hostkit import __version__
from hostkit.protocol import (
    AGENT_INSTANCE_HEADER,
    DrainReply,
    Error,
    Heartbeat,
    HeartbeatReply,
    PingReply,
    Register,
    RegisterReply,
)

T = TypeVar("T")


class RouterUnreachable(Exception):
    """The router could not be reached or failed (network error, timeout, 5xx)."""


class RouterRejected(Exception):
    """The router answered 4xx."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


class RouterClient:
    def __init__(self, base_url: str, host_token: str, timeout_s: float = 10.0, *, instance: str | None = None) -> None:
        """`instance`: this agent's id (hostkit.protocol.AGENT_INSTANCE_HEADER), sent with every call."""
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {host_token}", "User-Agent": f"tokenmill-host/{__version__}"}
        if instance:
            headers[AGENT_INSTANCE_HEADER] = instance
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def __repr__(self) -> str:
        return f"RouterClient({self.base_url!r})"

    async def _post(self, path: str, body: msgspec.Struct | None = None) -> bytes:
        """POST (JSON body, or none) and return the 2xx reply's bytes."""
        try:
            if body is None:
                resp = await self._http.post(path)
            else:
                resp = await self._http.post(path, content=msgspec.json.encode(body),
                                             headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise RouterUnreachable(f"POST {path}: {type(exc).__name__}: {exc}") from None
        return self._checked("POST", path, resp)

    @staticmethod
    def _checked(method: str, path: str, resp: httpx.Response) -> bytes:
        if resp.status_code >= 500:
            raise RouterUnreachable(f"{method} {path}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            err = _error(resp)
            raise RouterRejected(resp.status_code, err.message, err.code)
        return resp.content

    @staticmethod
    def _decode(path: str, data: bytes, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(data, type=kind)
        except msgspec.MsgspecError as exc:
            raise RouterUnreachable(f"{path}: unexpected reply: {exc}") from None

    async def register(self, msg: Register) -> RegisterReply:
        return self._decode("/hosts/register", await self._post("/hosts/register", msg), RegisterReply)

    async def ping(self) -> PingReply:
        """GET /hosts/ping: reachable and the token accepted, changing nothing (the hardware check)."""
        try:
            resp = await self._http.get("/hosts/ping")
        except httpx.HTTPError as exc:
            raise RouterUnreachable(f"GET /hosts/ping: {type(exc).__name__}: {exc}") from None
        return self._decode("/hosts/ping", self._checked("GET", "/hosts/ping", resp), PingReply)

    async def heartbeat(self, msg: Heartbeat) -> HeartbeatReply:
        return self._decode("/hosts/heartbeat", await self._post("/hosts/heartbeat", msg), HeartbeatReply)

    async def drain(self) -> DrainReply:
        return self._decode("/hosts/drain", await self._post("/hosts/drain"), DrainReply)

    async def resume(self) -> DrainReply:
        return self._decode("/hosts/resume", await self._post("/hosts/resume"), DrainReply)

    async def deregister(self) -> None:
        await self._post("/hosts/deregister")

    async def aclose(self) -> None:
        await self._http.aclose()


class _Envelope(msgspec.Struct):
    error: Error


def _error(resp: httpx.Response) -> Error:
    """The router's error: OpenAI's envelope {"error": {...}}, or a bare Error from an older router."""
    for kind in (_Envelope, Error):
        try:
            decoded = msgspec.json.decode(resp.content, type=kind)
        except msgspec.MsgspecError:
            continue
        return decoded.error if isinstance(decoded, _Envelope) else decoded
    return Error(message=resp.text[:200])
