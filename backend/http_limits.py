"""Limits uvicorn's HTTP protocol does not enforce by itself, so that a slow, idle or hostile
client holds a connection only for a bounded time and bounded memory:

- headers larger than `max_header_bytes` -> 431, counted as they arrive (a 30 MB header is
  refused after the first chunk past the limit, not read in full);
- headers not complete `header_timeout_s` after the connection opened (or after the first byte
  of a kept-alive connection's next request) -> 408; a new connection that sent nothing is closed;
- a body not complete `body_timeout_s` after its headers (a slow body, or a Content-Length
  larger than what was sent) -> 408, and the app reading it sees the client gone;
- more than `max_connections_per_ip` open connections from one address -> 429 with Retry-After.
  429 rather than 503: the refusal is about this client's behaviour, not the server's health,
  and the OpenAI SDKs retry a 429 after Retry-After.

Every refusal is answered in the OpenAI error envelope and the connection is closed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from backend.settings import Settings
from backend.wire.errors import error_bytes


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_s: float = 30.0
    max_connections_per_ip: int = 256  # 0: no cap

    @classmethod
    def from_settings(cls, s: Settings) -> HttpLimits:
        return cls(s.http_max_header_bytes, s.http_header_timeout_s, s.http_body_timeout_s, s.http_keep_alive_s,
                   s.http_max_connections_per_ip)


def limited_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)`, with its own per-address counts (one per server)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits, "open_per_ip": Counter()})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits] = HttpLimits()
    open_per_ip: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._counted_ip: str | None = None
        self._over_ip_cap = False
        self._finished = False  # answered by a limit and closed: ignore whatever still arrives
        self._awaiting_headers = True
        self._in_message = False  # some bytes of the awaited request arrived
        self._pending_bytes = 0  # bytes received while its headers were incomplete
        self._header_bytes = 0  # request line + headers of the request being parsed
        self._completed = 0  # requests whose message ended on this connection

    # ------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ip = self.client[0] if self.client else None
        cap = self.limits.max_connections_per_ip
        if ip is not None and cap:
            if self.open_per_ip[ip] >= cap:
                # Answered when its request arrives: closing now, with the request unread,
                # would reset the connection and lose the answer.
                self._over_ip_cap = True
            else:
                self.open_per_ip[ip] += 1
                self._counted_ip = ip
        self._arm(self.limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._counted_ip is not None:
            self.open_per_ip[self._counted_ip] -= 1
            if self.open_per_ip[self._counted_ip] <= 0:
                del self.open_per_ip[self._counted_ip]
            self._counted_ip = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        if self._over_ip_cap:
            cap = self.limits.max_connections_per_ip
            self._refuse(429, f"Too many connections from your address (at most {cap} at a time); "
                              "retry after 1 second.", "too_many_connections", retry_after=1)
            return
        completed = self._completed
        super().data_received(data)
        if self._finished or not self._awaiting_headers:
            return
        if self._completed != completed:
            # A request ended inside this chunk: what follows it is unknown in length (its body was
            # in the chunk too), so the next request's headers are counted from the next chunk on.
            self._pending_bytes = 0
            return
        self._pending_bytes += len(data)
        if self._pending_bytes > self.limits.max_header_bytes:
            self._headers_too_large()

    # ------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self._header_bytes = 0
        if self._timer is None:  # the next request on a kept-alive connection
            self._arm(self.limits.header_timeout_s, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._finished:
            return
        self._cancel_timer()
        self._awaiting_headers = False
        self._pending_bytes = 0
        if self._header_bytes > self.limits.max_header_bytes:
            self._headers_too_large()
            return
        super().on_headers_complete()
        # Cancelled by on_message_complete, at once for a request without a body.
        self._arm(self.limits.body_timeout_s, self._body_late)

    def on_body(self, body: bytes) -> None:
        if not self._finished:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._finished:
            return
        self._cancel_timer()
        self._completed += 1
        self._awaiting_headers = True
        self._in_message = False
        self._pending_bytes = 0
        super().on_message_complete()

    # ------------------------------------------------------------ limits
    def _headers_late(self) -> None:
        self._timer = None
        if self._finished or not self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: look again later.
            self._arm(self.limits.header_timeout_s, self._headers_late)
            return
        if not self._in_message:
            self._close()  # a connection that never sent a request: nobody to answer
            return
        self._refuse(408, f"The request headers did not arrive within {self.limits.header_timeout_s:g} s.",
                     "request_timeout")

    def _body_late(self) -> None:
        self._timer = None
        if self._finished or self._awaiting_headers:
            return
        if self.cycle is not None and self.cycle.response_started:
            # Answered without its body (a refusal such as 401): nothing more to say.
            self.cycle.disconnected = True
            self._close()
            return
        self._refuse(408, f"The request body did not arrive within {self.limits.body_timeout_s:g} s "
                          "(is its Content-Length larger than what was sent?).", "request_timeout")

    def _headers_too_large(self) -> None:
        self._refuse(431, f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
                     "request_header_fields_too_large")

    def _refuse(self, status: int, message: str, code: str, *, retry_after: int | None = None) -> None:
        """Answer `status` in the error envelope and close, unless a response is already under way
        (then only close: bytes of ours would corrupt it)."""
        cycle = self.cycle
        # A queued (pipelined) request means the response before it may still be going out.
        answering = bool(self.pipeline) or (cycle is not None and cycle.response_started
                                            and not cycle.response_complete)
        if cycle is not None and not cycle.response_complete:
            # The app, if it is still reading this request, sees the client gone and writes nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        if not answering and not self.transport.is_closing():
            body = error_bytes(status, message, code)
            head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
            if retry_after is not None:
                head.append(b"retry-after: %d\r\n" % retry_after)
            self.transport.write(b"".join(head) + b"\r\n" + body)
        self._close()

    def _close(self) -> None:
        self._finished = True
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def _arm(self, delay: float, callback) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)  # real I/O: a client connection's timeout

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
