"""A fast fake OpenAI-compatible engine for the gateway benchmark.

It costs as little CPU as it can so that what the benchmark measures is the router: a raw
asyncio Protocol on uvloop, httptools parsing, responses built once per (model, stream,
include_usage) and reused, keep-alive.

    POST /v1/chat/completions   not streaming: a small chat.completion with `usage`
                                streaming: 20 content chunks as SSE (compact JSON, like vLLM),
                                then, with stream_options.include_usage, a chunk with
                                "choices":[] and usage, then `data: [DONE]` (chunked encoding,
                                one event per write, the loop runs between writes)
    GET  /health                200
    GET  /v1/models             the model(s) named by --model

    .venv/bin/python bench/gateway/fake_upstream.py --port 8001
    .venv/bin/python bench/gateway/fake_upstream.py --port 8001 --token-interval-ms 5   # paced stream
    ... --tls-cert CERT --tls-key KEY     # also serves HTTPS on a second port (printed second)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import ssl
import sys

import httptools
import msgspec

CHUNKS = 20
PROMPT_TOKENS = 17
CREATED = 1_700_000_000
_SERVER = b"server: fake-upstream\r\n"


class _Opts(msgspec.Struct):
    include_usage: bool = False


class _Req(msgspec.Struct):
    model: str = "fake"
    stream: bool = False
    stream_options: _Opts | None = None


_decode = msgspec.json.Decoder(_Req).decode
_encode = msgspec.json.Encoder().encode


def _response(status: bytes, body: bytes, ctype: bytes = b"application/json", keep: bool = True) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\n" + _SERVER + b"content-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + (b"" if keep else b"connection: close\r\n") + b"\r\n" + body)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _usage(completion: int) -> dict:
    return {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS + completion,
            "completion_tokens": completion}


def build_unary(model: str) -> bytes:
    doc = {"id": "chatcmpl-fake0000000000000000", "object": "chat.completion", "created": CREATED, "model": model,
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * CHUNKS},
                        "logprobs": None, "finish_reason": "stop"}],
           "usage": _usage(CHUNKS)}
    return _encode(doc)


def build_stream(model: str, include_usage: bool) -> list[bytes]:
    """The wire pieces of one streamed reply: headers + first event, each later event, end."""
    head = {"id": "chatcmpl-fake0000000000000000", "object": "chat.completion.chunk", "created": CREATED,
            "model": model}
    events = []
    for i in range(CHUNKS):
        delta = {"role": "assistant", "content": "tok "} if i == 0 else {"content": "tok "}
        doc = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": "stop" if i == CHUNKS - 1 else None}]}
        events.append(b"data: " + _encode(doc) + b"\n\n")
    if include_usage:
        events.append(b"data: " + _encode({**head, "choices": [], "usage": _usage(CHUNKS)}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    headers = (b"HTTP/1.1 200 OK\r\n" + _SERVER + b"content-type: text/event-stream; charset=utf-8\r\n"
               b"transfer-encoding: chunked\r\n\r\n")
    pieces = [_chunk(e) for e in events]
    pieces[0] = headers + pieces[0]
    pieces[-1] += b"0\r\n\r\n"
    return pieces


class Replies:
    """Every reply built once and reused."""

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self._unary: dict[str, bytes] = {}
        self._stream: dict[tuple[str, bool], list[bytes]] = {}
        listing = {"object": "list", "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
                                              for m in models]}
        self.models_reply = _response(b"200 OK", _encode(listing))
        self.health = _response(b"200 OK", b"", b"text/plain")
        self.not_found = _response(b"404 Not Found", b'{"error":{"message":"not found","type":"not_found"}}')
        self.bad = _response(b"400 Bad Request", b'{"error":{"message":"bad request","type":"invalid_request"}}')

    def unary(self, model: str) -> bytes:
        r = self._unary.get(model)
        if r is None:
            if len(self._unary) > 64:
                self._unary.clear()
            r = self._unary[model] = _response(b"200 OK", build_unary(model))
        return r

    def stream(self, model: str, include_usage: bool) -> list[bytes]:
        k = (model, include_usage)
        r = self._stream.get(k)
        if r is None:
            if len(self._stream) > 64:
                self._stream.clear()
            r = self._stream[k] = build_stream(model, include_usage)
        return r


class HttpConn(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (pipelined ones wait)."""

    __slots__ = ("_body", "_closed", "_i", "_interval", "_keep", "_loop", "_parser", "_paused", "_pending",
                 "_pieces", "_replies", "_transport", "_url")

    def __init__(self, replies: Replies, interval_s: float) -> None:
        self._replies = replies
        self._interval = interval_s
        self._loop = asyncio.get_event_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._pending: collections.deque = collections.deque()
        self._pieces: list[bytes] | None = None
        self._i = 0
        self._keep = True
        self._paused = False
        self._closed = False

    # --------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pieces = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pieces is not None:
            self._loop.call_soon(self._next_piece)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            self._transport.write(self._replies.bad)
            self._close()

    # --------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        req = (self._parser.get_method(), self._url, b"".join(self._body), self._parser.should_keep_alive())
        if self._pieces is not None:
            self._pending.append(req)
        else:
            self._handle(req)

    # --------------------------------------------------------------- requests
    def _handle(self, req: tuple[bytes, bytes, bytes, bool]) -> None:
        method, url, body, keep = req
        path = url.split(b"?", 1)[0]
        r = self._replies
        if method == b"POST" and path == b"/v1/chat/completions":
            try:
                parsed = _decode(body)
            except msgspec.MsgspecError:
                self._reply(r.bad, keep)
                return
            if parsed.stream:
                usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
                self._pieces, self._i, self._keep = r.stream(parsed.model, usage), 0, keep
                self._next_piece()
            else:
                self._reply(r.unary(parsed.model), keep)
        elif method == b"GET" and path == b"/health":
            self._reply(r.health, keep)
        elif method == b"GET" and path == b"/v1/models":
            self._reply(r.models_reply, keep)
        else:
            self._reply(r.not_found, keep)

    def _reply(self, data: bytes, keep: bool) -> None:
        if self._closed:
            return
        self._transport.write(data)
        if not keep:
            self._close()

    def _next_piece(self) -> None:
        pieces = self._pieces
        if pieces is None or self._closed or self._paused:
            return
        self._transport.write(pieces[self._i])
        self._i += 1
        if self._i < len(pieces):
            if self._interval:
                self._loop.call_later(self._interval, self._next_piece)
            else:
                self._loop.call_soon(self._next_piece)
            return
        self._pieces = None
        if not self._keep:
            self._close()
            return
        while self._pending and self._pieces is None and not self._closed:
            self._handle(self._pending.popleft())

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()


async def serve(host: str, port: int, models: list[str], interval_s: float,
                tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    replies = Replies(models)
    servers = [await loop.create_server(lambda: HttpConn(replies, interval_s), host, port, backlog=2048,
                                        reuse_address=True)]
    if tls is not None:  # the same engine over TLS, as a rented host's engine is reached
        servers.append(await loop.create_server(lambda: HttpConn(replies, interval_s), host, 0, backlog=2048,
                                                reuse_address=True, ssl=tls))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for server, scheme in zip(servers, ("http", "https"), strict=False):
        print(f"fake upstream on {scheme}://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001, help="0 = any free port (printed)")
    ap.add_argument("--model", action="append", help="model id for /v1/models (repeatable)")
    ap.add_argument("--token-interval-ms", type=float, default=0.0,
                    help="pause between stream events (default 0: only yield to the loop)")
    ap.add_argument("--tls-cert", help="PEM certificate: also serve HTTPS on a free port (needs --tls-key)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = ap.parse_args(argv)
    models = args.model or ["llama-3.1-8b-instruct"]
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            ap.error("--tls-cert and --tls-key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    import uvloop

    uvloop.run(serve(args.host, args.port, models, args.token_interval_ms / 1000, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
