"""A simulated inference engine with vLLM's OpenAI-compatible surface (aiohttp.web).

The embedded demo, the tests and the benchmarks run it instead of vLLM when there is no GPU. To an
OpenAI client or to the router it looks like vLLM: /v1/models, /v1/chat/completions,
/v1/completions (streaming and not, vLLM's JSON shapes), /health and /metrics (vLLM's names).
Text and token counts are deterministic (see hostkit.sim.text); time follows `SimTiming`.
It honours what vLLM honours (hostkit/sim/openai_shapes.py): stop strings, logprobs, echo,
response_format, tools with a named tool_choice, token-id prompts, max_model_len.

Timing model, per model (each model behaves like its own vLLM instance):
- at most `max_concurrency` requests run; later ones wait in FIFO order (num_requests_waiting);
- a running request first pays prefill: ttft_base_s + prompt_tokens / prefill_tps;
- then one decode step per output token, each lasting max(1, running / batch_capacity) / decode_tps:
  every stream gets decode_tps until more than batch_capacity run, then they share
  decode_tps x batch_capacity;
- every duration is divided by `speed`; speed 0 never sleeps (benchmarks, fast tests).

Fault injection for tests lives under /_sim/ (never /v1): POST /_sim/fail with
{"mode": "refuse"} (503 to new requests), {"mode": "500"} (500 to new requests),
{"mode": "cut_after", "after": N} (streams close the connection after N events, non-streaming
requests close it before replying), {"mode": "hang"} (new requests get no reply until healed or
stopped); POST /_sim/heal ends it; GET /_sim/state shows counters and the fault. A fault applies
to requests that arrive while it is set; /health answers 503 under refuse, 500 and hang.

Started with an `api_key`, it answers 401 (OpenAI's error envelope, code invalid_api_key) to every
request without `Authorization: Bearer <api_key>` except GET /health, as the agent's
vLLM does (its own key check plus hostkit/vllm_plugins/tokenmill_engine_guard.py); without one it
takes any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field

from hostkit.sim import metrics as sim_metrics
from hostkit.sim import openai_shapes as oai
from hostkit.sim.output import TEXT, ChoicePlan, Shape, plan_choice
from hostkit.sim.text import (
    count_chat_prompt_tokens,
    count_completion_prompt_tokens,
    decode_token_ids,
    json_tokens,
)

DEFAULT_MAX_TOKENS = 16  # when a request gives none (OpenAI's completions default)
MAX_CHOICES = 16  # bound on `n` (and prompts x n), so one request cannot occupy the sim for long
MAX_LOGPROBS = 20  # vLLM's default --max-logprobs
VOCAB_SIZE = 128_256  # token ids a prompt may hold (Llama 3's vocabulary)
SHUTDOWN_GRACE_S = 1.0  # stop() lets running handlers finish this long, then cancels them
OPEN_PATHS = frozenset({"/health"})  # answered without the engine key (a liveness probe, nothing to read)

FaultMode = Literal["refuse", "500", "cut_after", "hang"]


class SimTiming(BaseModel):
    """Speed and capacity of the simulated engine; passed in by whoever starts it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefill_tps: float = Field(default=5000.0, gt=0, description="prompt tokens per second")
    decode_tps: float = Field(default=40.0, gt=0, description="output tokens per second per stream")
    ttft_base_s: float = Field(default=0.05, ge=0, description="fixed part of time to first token")
    max_concurrency: int = Field(default=64, ge=1, description="running requests; more wait")
    batch_capacity: int = Field(default=32, ge=1, description="streams decoded at full per-stream speed")
    speed: float = Field(default=1.0, ge=0, description="time multiplier; 0 = never sleep")
    kv_cache_tokens: int = Field(default=262_144, ge=1, description="KV cache size, for kv_cache_usage_perc")
    max_model_len: int = Field(default=8192, ge=2, description="context length: prompt + completion tokens")


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    after: int = 0  # cut_after: SSE events sent before the connection is closed


class _FailBody(msgspec.Struct):
    mode: FaultMode
    after: int = 0


@dataclass
class _Job:
    """A validated generation request."""

    model: str
    chat: bool
    prompts: list[str]
    prompt_counts: list[int]  # tokens of each prompt
    max_tokens: int
    n: int
    seed: int
    stop: list[str]
    stream: bool
    include_usage: bool
    shape: Shape = TEXT
    top_logprobs: int | None = None  # None: no logprobs
    echo: bool = False

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt_counts)

    def plans(self) -> list[ChoicePlan]:
        return [plan_choice(model=self.model, prompt=prompt, seed=self.seed, choice=choice,
                            max_tokens=self.max_tokens, stop=self.stop, shape=self.shape,
                            top_logprobs=self.top_logprobs, echo=self.echo, prompt_token_count=count)
                for prompt, count in zip(self.prompts, self.prompt_counts, strict=True) for choice in range(self.n)]


class _Pacer:
    """Sleeps along one schedule per request, so per-token sleeps do not accumulate drift.

    Yields to the loop at least every 64 steps even when no sleep is due (speed 0), so a long
    reply never holds the event loop.
    """

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time()
        self._unyielded = 0

    async def wait(self, seconds: float) -> None:
        if self._speed > 0:
            self._due += seconds / self._speed
            delay = self._due - self._loop.time()
            if delay > 0:
                self._unyielded = 0
                await asyncio.sleep(delay)
                return
        self._unyielded += 1
        if self._unyielded >= 64:
            self._unyielded = 0
            await asyncio.sleep(0)


class SimEngine:
    """A running simulated engine. Build it with `start_sim_engine`."""

    def __init__(self, models: list[str], timing: SimTiming, seed: int, api_key: str | None = None) -> None:
        if not models:
            raise ValueError("the simulated engine needs at least one model")
        self.models = list(dict.fromkeys(models))
        self.timing = timing
        self.seed = seed
        self.stats = {m: sim_metrics.ModelStats() for m in self.models}
        self.host = ""
        self.port = 0
        self.scheme = "http"
        self._slots = {m: asyncio.Semaphore(timing.max_concurrency) for m in self.models}
        self._fault: Fault | None = None
        self._unhang = asyncio.Event()
        self._closed = False
        self._created = int(time.time())
        self._runner: web.AppRunner | None = None
        self._key = api_key.encode() if api_key else None

    # -- public face ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL without /v1, e.g. http://127.0.0.1:8001."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def requests_total(self) -> int:
        return sum(s.requests_total for s in self.stats.values())

    @property
    def running(self) -> int:
        return sum(s.running for s in self.stats.values())

    @property
    def waiting(self) -> int:
        return sum(s.waiting for s in self.stats.values())

    @property
    def fault(self) -> Fault | None:
        return self._fault

    def fail(self, mode: FaultMode, after: int = 0) -> None:
        if after < 0:
            raise ValueError("after must be >= 0")
        self._fault = Fault(mode, after)
        if mode == "hang":
            self._unhang.clear()

    def set_models(self, models: list[str]) -> None:
        """Serve `models` from now on, in place: requests of a model still served are not disturbed,
        one no longer served is refused as unknown (a request already running finishes)."""
        if not models:
            raise ValueError("the simulated engine needs at least one model")
        self.models = list(dict.fromkeys(models))
        for m in self.models:
            self.stats.setdefault(m, sim_metrics.ModelStats())
            self._slots.setdefault(m, asyncio.Semaphore(self.timing.max_concurrency))

    def heal(self) -> None:
        self._fault = None
        self._unhang.set()

    async def stop(self) -> None:
        self._closed = True
        self._unhang.set()  # hung requests wake and drop their connections
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- server --------------------------------------------------------------------------------

    async def _start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application(middlewares=[self._require_key] if self._key is not None else [])
        app.add_routes([
            web.get("/v1/models", self._models),
            web.post("/v1/chat/completions", self._chat),
            web.post("/v1/completions", self._completions),
            web.get("/health", self._health),
            web.get("/metrics", self._metrics),
            web.post("/_sim/fail", self._sim_fail),
            web.post("/_sim/heal", self._sim_heal),
            web.get("/_sim/state", self._sim_state),
        ])
        # handler_cancellation: a client that disconnects aborts its request, as in vLLM.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.scheme = "https" if ssl_context is not None else "http"
        self.host, self.port = runner.addresses[0][:2]

    @web.middleware
    async def _require_key(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or _bearer_matches(request.headers.get("Authorization"), self._key):
            return await handler(request)
        resp = _error(oai.BadRequest("Missing or wrong engine key: send 'Authorization: Bearer <engine key>'.",
                                     status=401, code="invalid_api_key"))
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    async def _models(self, _request: web.Request) -> web.Response:
        return _json(oai.models_list(self.models, self._created, self.timing.max_model_len))

    async def _health(self, _request: web.Request) -> web.Response:
        unhealthy = self._fault is not None and self._fault.mode != "cut_after"
        return web.Response(status=503 if unhealthy else 200)

    async def _metrics(self, _request: web.Request) -> web.Response:
        text = sim_metrics.render(self.stats, self.timing.kv_cache_tokens)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _sim_fail(self, request: web.Request) -> web.Response:
        try:
            body = oai.decode_request(await request.read(), _FailBody)
            self.fail(body.mode, body.after)
        except oai.BadRequest as exc:
            return _error(exc)
        except ValueError as exc:
            return _error(oai.BadRequest(str(exc), param="after"))
        return await self._sim_state(request)

    async def _sim_heal(self, request: web.Request) -> web.Response:
        self.heal()
        return await self._sim_state(request)

    async def _sim_state(self, _request: web.Request) -> web.Response:
        fault = None if self._fault is None else {"mode": self._fault.mode, "after": self._fault.after}
        return _json(msgspec.json.encode({
            "fault": fault, "requests_total": self.requests_total, "running": self.running,
            "waiting": self.waiting, "models": self.models,
        }))

    # -- generation ----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = oai.decode_request(await request.read(), oai.ChatRequest)
            texts = [m.text() for m in body.messages]
            if not texts:
                raise oai.BadRequest("messages must not be empty", param="messages")
            prompt = "\n".join(f"{m.role}: {t}" for m, t in zip(body.messages, texts, strict=True))
            count = count_chat_prompt_tokens(texts)
            if body.tools:  # the chat template writes the tool definitions into the prompt
                count += len(json_tokens(msgspec.json.encode(body.tools).decode()))
            job = self._job(body, chat=True, prompts=[prompt], prompt_counts=[count],
                            max_tokens=body.max_tokens if body.max_completion_tokens is None
                            else body.max_completion_tokens, prompt_param="messages")
            job.shape = _chat_shape(body)
            job.top_logprobs = _chat_logprobs(body)
            self._structured_length(job, body.max_tokens or body.max_completion_tokens)
        except oai.BadRequest as exc:
            return _error(exc)
        return await self._serve(request, job)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = oai.decode_request(await request.read(), oai.CompletionRequest)
            given = body.prompts()
            if not given:
                raise oai.BadRequest("prompt must not be empty", param="prompt")
            prompts, counts = [], []
            for p in given:
                if isinstance(p, str):
                    prompts.append(p)
                    counts.append(count_completion_prompt_tokens(p))
                else:
                    _check_token_ids(p)
                    prompts.append(decode_token_ids(p))
                    counts.append(len(p))
            job = self._job(body, chat=False, prompts=prompts, prompt_counts=counts, max_tokens=body.max_tokens,
                            prompt_param="prompt")
            if body.logprobs is not None:
                job.top_logprobs = _bounded_logprobs(body.logprobs, "logprobs")
            job.echo = bool(body.echo)
            job.shape = _format_shape(body.response_format)
            self._structured_length(job, body.max_tokens)
        except oai.BadRequest as exc:
            return _error(exc)
        return await self._serve(request, job)

    def _structured_length(self, job: _Job, asked: int | None) -> None:
        """Without max_tokens, JSON or a tool call may run to the end of the context, as in vLLM
        (it ends by itself); free text keeps the short default, so a bare request stays quick."""
        if asked is None and job.shape.kind != "text":
            job.max_tokens = self.timing.max_model_len - max(job.prompt_counts)

    def _job(self, body: oai.ChatRequest | oai.CompletionRequest, *, chat: bool, prompts: list[str],
             prompt_counts: list[int], max_tokens: int | None, prompt_param: str) -> _Job:
        if body.model not in self.models:
            raise oai.BadRequest(f"The model `{body.model}` does not exist.", param="model", status=404,
                                 code="model_not_found")
        if body.stream_options is not None and not body.stream:
            raise oai.BadRequest("Stream options can only be defined when `stream=True`.", param="stream_options")
        if not 1 <= body.n * len(prompts) <= MAX_CHOICES:
            raise oai.BadRequest(f"n (times the number of prompts) must be between 1 and {MAX_CHOICES}", param="n")
        limit = self.timing.max_model_len
        longest = max(prompt_counts)
        if longest >= limit:
            raise oai.BadRequest(
                f"This model's maximum context length is {limit} tokens. However, your request has {longest} "
                f"input tokens. Please reduce the length of the input.", param=prompt_param,
                code="context_length_exceeded")
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, limit - longest)
        elif max_tokens < 1:
            raise oai.BadRequest(f"max_tokens must be at least 1, got {max_tokens}.", param="max_tokens")
        elif longest + max_tokens > limit:
            raise oai.BadRequest(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{longest + max_tokens} tokens ({longest} in the input, {max_tokens} in the completion). "
                f"Please reduce the length of the input or completion.", param="max_tokens",
                code="context_length_exceeded")
        return _Job(
            model=body.model, chat=chat, prompts=prompts, prompt_counts=prompt_counts, max_tokens=max_tokens,
            n=body.n, seed=self.seed if body.seed is None else body.seed, stop=body.stop_list(), stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )

    async def _serve(self, request: web.Request, job: _Job) -> web.StreamResponse:
        stats = self.stats[job.model]
        stats.requests_total += 1
        fault = self._fault
        if fault is not None and fault.mode == "refuse":
            return _error(oai.BadRequest("The engine is not accepting requests.", status=503,
                                         code="engine_unavailable"))
        if fault is not None and fault.mode == "500":
            return _error(oai.BadRequest("Simulated engine failure.", status=500, code="engine_error"))
        if fault is not None and fault.mode == "hang":
            await self._unhang.wait()
            if self._closed:
                return _drop(request, web.Response())
        cut_after = fault.after if fault is not None and fault.mode == "cut_after" else None

        plans = job.plans()
        use = oai.usage(job.prompt_tokens, sum(len(p.pieces) for p in plans))
        rid = ("chatcmpl-" if job.chat else "cmpl-") + secrets.token_hex(16)
        created = int(time.time())
        top = job.top_logprobs or 0

        if not job.stream:
            async with contextlib.aclosing(self._generate(job, plans)) as steps:
                async for _ in steps:
                    pass
            if cut_after is not None:
                return _drop(request, web.Response())
            build = oai.chat_completion if job.chat else oai.text_completion
            return _json(build(rid, created, job.model, plans, top, use))

        # Like vLLM, headers go out at once; events follow as tokens are generated.
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        writer = oai.ChunkWriter(rid, created, job.model, chat=job.chat, include_usage=job.include_usage, top=top)
        sent = 0

        async def send(event: bytes) -> None:
            nonlocal sent
            if cut_after is not None and sent >= cut_after:
                raise _Cut
            await resp.write(event)
            sent += 1

        try:
            for i, plan in enumerate(plans):
                if job.chat:
                    await send(writer.role(i))
                elif plan.echo:
                    await send(writer.token(i, plan.echo, plan.echo_logprobs))
            # aclosing: a cut or lost stream gives its running slot back now, not at garbage collection.
            async with contextlib.aclosing(self._generate(job, plans)) as steps:
                async for produced in steps:
                    for i, step in produced:
                        event = _token_event(writer, plans[i], i, step)
                        if event is not None:
                            await send(event)
            for i, plan in enumerate(plans):
                await send(writer.finish(i, plan.finish, plan.stop_reason))
            if job.include_usage:
                await send(writer.usage(use))
            await send(writer.done())
        except _Cut:
            return _drop(request, resp)
        await resp.write_eof()
        return resp

    async def _generate(self, job: _Job, plans: list[ChoicePlan]) -> AsyncIterator[list[tuple[int, int]]]:
        """Admit the job, pay prefill, then yield each decode step's (choice, token position) pairs."""
        t = self.timing
        stats = self.stats[job.model]
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        async with self._admitted(job) as hold:
            pacer = _Pacer(t.speed)
            hold(job.prompt_tokens)
            await pacer.wait(t.ttft_base_s + job.prompt_tokens / t.prefill_tps)
            stats.prompt_tokens_total += job.prompt_tokens
            for step in range(max(len(p.pieces) for p in plans)):
                await pacer.wait(max(1.0, stats.running / t.batch_capacity) / t.decode_tps)
                produced = [(i, step) for i, p in enumerate(plans) if step < len(p.pieces)]
                stats.generation_tokens_total += len(produced)
                hold(len(produced))
                if step == 0:
                    stats.observe_ttft(loop.time() - arrived)
                yield produced

    @contextlib.asynccontextmanager
    async def _admitted(self, job: _Job) -> AsyncIterator[_KvHold]:
        """Wait for a running slot (counted as waiting), then count as running until done."""
        stats = self.stats[job.model]
        slot = self._slots[job.model]
        stats.waiting += 1
        try:
            await slot.acquire()
        finally:
            stats.waiting -= 1
        stats.running += 1
        hold = _KvHold(stats)
        try:
            yield hold
        finally:
            stats.running -= 1
            stats.kv_tokens -= hold.held
            slot.release()


class _KvHold:
    """KV-cache tokens a running request holds; released when it leaves the batch."""

    def __init__(self, stats: sim_metrics.ModelStats) -> None:
        self._stats = stats
        self.held = 0

    def __call__(self, tokens: int) -> None:
        self.held += tokens
        self._stats.kv_tokens += tokens


def _token_event(writer: oai.ChunkWriter, plan: ChoicePlan, index: int, step: int) -> bytes | None:
    """The SSE event for one generated token, or None when it carries nothing (cut by a stop string)."""
    piece = plan.pieces[step]
    logprobs = [plan.logprobs[step]] if plan.logprobs is not None else None
    if plan.tool_call is not None:
        return writer.tool_call(index, piece, plan.tool_call if step == 0 else None, logprobs)
    if not piece and logprobs is None:
        return None
    return writer.token(index, piece, logprobs)


def _bounded_logprobs(value: int, param: str) -> int:
    if not 0 <= value <= MAX_LOGPROBS:
        raise oai.BadRequest(f"{param} must be between 0 and {MAX_LOGPROBS}, got {value}.", param=param)
    return value


def _chat_logprobs(body: oai.ChatRequest) -> int | None:
    """How many top logprobs a chat request wants per token; None for no logprobs (vLLM's rules)."""
    if body.top_logprobs is not None:
        _bounded_logprobs(body.top_logprobs, "top_logprobs")
        if body.top_logprobs > 0 and not body.logprobs:
            raise oai.BadRequest("when using `top_logprobs`, `logprobs` must be set to true.", param="top_logprobs")
    return (body.top_logprobs or 0) if body.logprobs else None


def _format_shape(fmt: oai.ResponseFormat | None) -> Shape:
    if fmt is None or fmt.type == "text":
        return TEXT
    if fmt.type == "json_object":
        return Shape("json")
    if fmt.json_schema is None:
        raise oai.BadRequest("response_format of type json_schema needs a json_schema.",
                             param="response_format.json_schema")
    return Shape("json", fmt.json_schema.schema or {})


def _chat_shape(body: oai.ChatRequest) -> Shape:
    """A tool call when tool_choice names a function (or is "required"), as vLLM's guided decoding
    makes one; otherwise text or the response_format. "auto" answers in text (no call chosen)."""
    choice, tools = body.tool_choice, body.tools or []
    if choice is None or choice in ("none", "auto"):
        return _format_shape(body.response_format)
    if not tools:
        raise oai.BadRequest("When using `tool_choice`, `tools` must be set.", param="tools")
    if choice == "required":
        tool = tools[0].function
        return Shape("tool", tool.parameters, tool.name, forced="required")
    assert isinstance(choice, oai.NamedToolChoice)
    tool = next((t.function for t in tools if t.function.name == choice.function.name), None)
    if tool is None:
        raise oai.BadRequest(f"Tool '{choice.function.name}' has not been passed in `tools`.", param="tool_choice")
    return Shape("tool", tool.parameters, tool.name)


def _check_token_ids(ids: list[int]) -> None:
    bad = next((i for i in ids if not 0 <= i < VOCAB_SIZE), None)
    if bad is not None:
        raise oai.BadRequest(f"Token id {bad} is out of vocabulary (0..{VOCAB_SIZE - 1}).", param="prompt")


class _Cut(Exception):
    """A cut_after fault ends this stream here."""


def _drop(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Close the connection without finishing the reply (a simulated crash or cut).

    aiohttp then fails to write the response's end on the closed transport and treats it as a
    client that went away: no error log, and the client sees a body cut short (or no reply).
    """
    if request.transport is not None:
        request.transport.close()
    return resp


def _bearer_matches(authorization: str | None, key: bytes | None) -> bool:
    """`Bearer <key>` (the scheme in any case), compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return key is not None and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _error(exc: oai.BadRequest) -> web.Response:
    type_ = {404: "not_found_error", 500: "server_error", 503: "service_unavailable_error"}.get(
        exc.status, "invalid_request_error")
    return _json(oai.error_body(exc.message, type_=type_, code=exc.code, param=exc.param), status=exc.status)


async def start_sim_engine(
    models: list[str],
    host: str = "127.0.0.1",
    port: int = 0,
    timing: SimTiming | None = None,
    seed: int = 0,
    api_key: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> SimEngine:
    """Start a simulated engine serving `models`; port 0 picks a free port (see `.url`).

    `seed` is the default for requests that give none, so output depends on (model, prompt, seed).
    `api_key`: required as a bearer key on everything but /health; None takes any request.
    `ssl_context`: serve HTTPS with it (the engines' certificate, hostkit/engine_tls.py).
    """
    engine = SimEngine(models, timing or SimTiming(), seed, api_key)
    await engine._start(host, port, ssl_context)
    return engine
