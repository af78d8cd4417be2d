"""Sending a request to an engine: replica choice, retries before the first byte, the transport.

The Forwarder knows nothing of money: the Proxy (auth, quote, hold, settle) uses it for paying
requests, and canary verification uses `send` to reach one named replica without billing anyone
(no hold, no usage event, no charge). Its transport is the pooled aiohttp session in production
or an in-process one (backend/routing/transports.py) for the simulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from backend.fleet.registry import Fleet, Replica
from backend.routing.transports import Transport, UpstreamResponse

MAX_RETRIES = 2


class UpstreamFailed(Exception):
    """No engine gave an answer worth passing on; `status` is what the client is told (502/504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# What a transport raises for an engine it could not reach or that broke: aiohttp's errors, and
# OSError's connection errors for the in-process transport.
UNREACHABLE = (aiohttp.ClientError, ConnectionError)


@dataclass(slots=True, frozen=True)
class Answer:
    """A whole answer of one replica to an unbilled request."""

    replica: Replica
    status: int
    headers: Mapping[str, str]  # read-only (aiohttp's CIMultiDictProxy)
    body: bytes


class Forwarder:
    def __init__(self, fleet: Fleet, transport: Transport, *, max_retries: int = MAX_RETRIES) -> None:
        self.fleet = fleet
        self.transport = transport
        self.max_retries = max_retries
        self._send = transport.send  # bound once: called on every attempt

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    async def open(self, model: str, path: str, body: bytes, rep: Replica, *, stream: bool,
                   need: int = 0) -> tuple[Replica, UpstreamResponse, bytes]:
        """Send to `rep` (chosen by the caller, fleet.choose); on a failure before any byte
        reached the client, try another replica (at most max_retries more), ejecting the one that
        failed. Returns the replica, the response and the full body (not streaming, or an error
        status) or its first chunk (streaming). The replica's `outstanding` stays counted until the
        caller is done with the response (then: `rep.outstanding -= 1` and release/close it).
        `need`: prompt + completion tokens a retry's replica must take."""
        send = self._send
        fleet = self.fleet
        tried: tuple[Replica, ...] = ()
        last = UpstreamFailed(502, "no replica answered")
        for attempt in range(self.max_retries + 1):
            if attempt:
                rep = fleet.choose(model, tried, need)
                if rep is None:
                    break
            tried += (rep,)
            rep.outstanding += 1
            resp = None
            try:
                resp = await send(rep, path, body)
                if resp.status >= 500:
                    raise UpstreamFailed(502, f"the engine answered {resp.status}")
                if resp.status == 401:  # the engine's key, not the client's: never pass this on as theirs
                    raise UpstreamFailed(502, "the engine refused the router's engine key (401)")
                if stream and resp.status == 200:
                    payload = await resp.content.readany()
                    if not payload:
                        raise UpstreamFailed(502, "the engine closed the stream before sending anything")
                else:
                    payload = await resp.read()
                return rep, resp, payload
            except TimeoutError:
                last = UpstreamFailed(504, f"{model}: the engine did not answer in time")
                why = "timeout"
            except UNREACHABLE as exc:
                last = UpstreamFailed(502, f"{model}: the engine could not be reached ({type(exc).__name__})")
                why = type(exc).__name__
            except UpstreamFailed as exc:
                last = UpstreamFailed(502, f"{model}: {exc}")
                why = str(exc)
            except BaseException:
                rep.outstanding -= 1
                if resp is not None:
                    resp.close()
                raise
            rep.outstanding -= 1
            if resp is not None:
                resp.close()
            fleet.failed(rep, why)
        raise UpstreamFailed(last.status, f"{last} (tried {len(tried)} replica{'s' if len(tried) > 1 else ''})")

    async def send(self, rep: Replica, path: str, body: bytes) -> Answer:
        """Send one request to this replica, whatever its state (a canary may probe a replica that
        is draining or ejected), with no retry and no billing; read the whole answer (a stream's
        SSE events included). The replica's health is left to the caller to judge: an engine that
        cannot be reached raises UpstreamFailed, any status is returned as it is."""
        rep.outstanding += 1  # a drain waits for it like any request
        resp = None
        try:
            resp = await self._send(rep, path, body)
            payload = await resp.read()
            return Answer(rep, resp.status, resp.headers, payload)
        except TimeoutError:
            raise UpstreamFailed(504, f"{rep.model} on {rep.host.name}: the engine did not answer in time") from None
        except UNREACHABLE as exc:
            raise UpstreamFailed(502, f"{rep.model} on {rep.host.name}: the engine could not be reached "
                                      f"({type(exc).__name__})") from None
        finally:
            rep.outstanding -= 1
            if resp is not None:
                resp.release()
