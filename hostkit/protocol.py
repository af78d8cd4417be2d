"""The wire contract between a host agent and the router (the `/hosts/...` API).

hostkit owns these messages; backend imports them. Every message is a msgspec Struct encoded
as JSON. Fields only ever get added (with defaults), so an older agent keeps working.

Authentication: every call carries `Authorization: Bearer <host token>` (tmh-...), issued once
by the operator (`POST /admin/hosts`) or by `tokenmill serve --local` for its simulated hosts.
The other way round, a host's engines accept only requests that carry `Authorization: Bearer
<engine key>` (everything but /health): the agent makes the key, starts its engines
with it and tells the router in `engine_key`, which the router keeps in memory only and sends with
every request it forwards to that host. An agent from before engine keys sends none, and its
engines are forwarded to without one.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PROTOCOL_VERSION = 1
HEARTBEAT_INTERVAL_S = 2.0
# A host that misses this many heartbeats in a row leaves the rotation until heard again.
MISSED_HEARTBEATS_DOWN = 3

# One live agent holds a host token at a time. Every call an agent makes carries this header with
# an id of its own (random per agent process): when a newer agent registers with the token, the
# router answers the older one's calls 409 `agent_replaced`, and that agent stops calling, so a
# stray agent (left running by a crash) can neither flap the host's replicas nor drain or
# deregister a host another agent serves. A call without the header (an older agent) is served.
AGENT_INSTANCE_HEADER = "X-Tokenmill-Agent"
AGENT_REPLACED = "agent_replaced"  # Error.code of that 409

# An engine key goes into an HTTP header as is: visible ASCII, no spaces, bounded.
EngineKey = Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,1024}$")]
TlsPin = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class GpuProcess(msgspec.Struct, omit_defaults=True):
    """A process holding memory on a GPU (vLLM's workers, or someone else's job)."""

    pid: int
    used_memory_mib: int | None = None  # None where the driver does not say (e.g. inside some containers)


class GpuTelemetry(msgspec.Struct, omit_defaults=True):
    """One GPU as NVML reports it. None means the driver does not report the field."""

    index: int
    name: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    uuid: str | None = None
    compute_capability: str | None = None  # "8.9"
    processes: list[GpuProcess] = []


class CheckResult(msgspec.Struct, omit_defaults=True):
    """The host's hardware check for one model (`tokenmill-host check`), run once the model's engine
    is healthy and again after every engine restart. The router sends a model's traffic to this
    host only while its latest result passed."""

    model: str
    passed: bool
    checked_us: int  # Unix time in microseconds when the check finished
    summary: str = ""  # one line: what failed, or the measured figures
    decode_tps: float | None = None  # measured single-stream decode tokens/s


class EngineMetrics(msgspec.Struct, omit_defaults=True):
    """Read from the engine's Prometheus endpoint (vLLM metric names)."""

    num_requests_running: int = 0  # vllm:num_requests_running
    num_requests_waiting: int = 0  # vllm:num_requests_waiting
    kv_cache_usage_perc: float = 0.0  # vllm:kv_cache_usage_perc (0..1)
    prompt_tokens_total: int = 0  # vllm:prompt_tokens_total
    generation_tokens_total: int = 0  # vllm:generation_tokens_total
    # Requests the engine runs at once at most (vLLM's max_num_seqs, the sim's max_concurrency):
    # running + waiting against it is the engine's load. None: not known (an older agent).
    max_num_seqs: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ServedModel(msgspec.Struct, omit_defaults=True):
    """A model this host serves, and where its OpenAI-compatible engine listens."""

    model: str  # our catalogue id, e.g. "llama-3.1-8b-instruct"
    endpoint: str  # base URL of the engine, e.g. "http://10.0.0.5:8001" (no /v1)
    engine: str = "vllm"  # "vllm" or "sim"
    ready: bool = True
    metrics: EngineMetrics | None = None
    # Prompt + completion tokens the engine takes per request (vLLM's max_model_len, from its
    # /v1/models); None when not read yet (or from an older agent): the catalogue's context then.
    max_model_len: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Register(msgspec.Struct, omit_defaults=True):
    name: str
    models: list[ServedModel]
    gpus: list[GpuTelemetry] = []
    gpu_type: str | None = None  # catalogue GPU id, e.g. "rtx4090"
    agent_version: str = ""
    protocol: int = PROTOCOL_VERSION
    driver_version: str | None = None  # NVIDIA driver, e.g. "550.54.15"; None without NVML
    cuda_version: str | None = None  # highest CUDA the driver supports, e.g. "12.4"
    checks: list[CheckResult] = []
    # The bearer key this host's engines require; None from an agent whose engines need none.
    engine_key: EngineKey | None = None
    # SHA-256 (hex) of the certificate the engines serve HTTPS with: the router accepts exactly it.
    # None: the engines speak plain HTTP (an agent reached over loopback, or from before engine TLS).
    engine_tls_sha256: TlsPin | None = None
    # When this agent process started (Unix µs): of two live agents with one token, the newer holds it.
    agent_started_us: int | None = None


class RegisterReply(msgspec.Struct):
    host_id: str
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S


class Heartbeat(msgspec.Struct, omit_defaults=True):
    models: list[ServedModel]
    in_flight: int = 0
    gpus: list[GpuTelemetry] = []
    draining: bool = False
    # Who asked for the drain: "host" (this host's operator, or its shutdown) or "router" (the agent
    # follows HeartbeatReply.drain). Only a drain the host asked for is the host's to start or end;
    # None (an older agent) counts as "host".
    drain_asked_by: Literal["host", "router"] | None = None
    checks: list[CheckResult] = []  # the latest result per model; a model absent here has none yet
    # The same key as in Register, again, so that every router that hears this host has it (one that
    # restarted, one of several behind a load balancer); None leaves the router's copy as it is.
    engine_key: EngineKey | None = None
    engine_tls_sha256: TlsPin | None = None  # as in Register; None leaves the router's copy as it is


class HeartbeatReply(msgspec.Struct):
    # What the router thinks of this host: "active", "quarantined", "draining", "drained", "removed".
    state: str
    # Requests the router has sent to this host that have not finished.
    outstanding: int = 0
    # The operator asked (from the console or admin API) for this host to drain; false again once
    # they resumed it, which ends a drain the agent began on this order.
    drain: bool = False
    # The operator resumed this host: the agent ends its drain even if the host asked for it (unless
    # it is shutting down). Sent until a heartbeat shows the agent has seen it.
    resume: bool = False


class PingReply(msgspec.Struct):
    """GET /hosts/ping: the router is reachable and knows this token (no side effect)."""

    host_id: str
    name: str
    state: str  # as in HeartbeatReply


class DrainReply(msgspec.Struct):
    state: str
    outstanding: int = 0


class Error(msgspec.Struct):
    """What a non-2xx reply from /hosts says, inside OpenAI's envelope {"error": {...}} (a bare
    Error from an older router)."""

    message: str
    code: str = "error"


# ---------------------------------------------------------------- host self-service (the host's own figures)
# GET /hosts/{id}/earnings and GET /hosts/{id}/market, with the host token; a host sees only its own
# (403 for another host's id). Money: integer nano-USD in `*_nano`, the exact USD amount beside it as a
# decimal string in `*_usd` (never a float); days are UTC ("2026-03-01"); times µs since the epoch, UTC.


class EarningsDay(msgspec.Struct):
    """One model on one UTC day: what this host earned serving it."""

    day: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    earned_nano: int
    earned_usd: str


class ModelEarnings(msgspec.Struct):
    """One model over the whole window."""

    model: str
    requests: int
    earned_nano: int
    earned_usd: str


class HostEarnings(msgspec.Struct):
    host_id: str
    name: str
    payout_share_bps: int  # the host's share of what clients pay for its requests; 0: it earns no share
    days: int  # the window: today and the days before it
    since_us: int
    until_us: int
    today_nano: int
    today_usd: str
    month_nano: int  # this UTC calendar month so far
    month_usd: str
    window_nano: int
    window_usd: str
    owed_nano: int  # the host payable balance: earned and not yet paid out
    owed_usd: str
    paid_nano: int  # paid out ever (ledger code host_payout)
    paid_usd: str
    per_model: list[ModelEarnings]  # over the window, largest first
    per_day: list[EarningsDay]  # oldest day first


class ModelLicence(msgspec.Struct):
    name: str
    url: str
    version: str
    commercial_use: str  # "allowed", "restricted", "forbidden"
    restrictions: str  # "" when none
    attribution: str  # text that must accompany the output or product; "" when none


class MarketModel(msgspec.Struct):
    model: str
    name: str
    fits: bool  # this host's GPUs can run it (memory, compute capability, a servable checkpoint)
    why_not: str  # "" when it fits
    enabled: bool  # the operator sells it; a disabled model earns nothing
    serving: bool  # this host serves it now
    prompt_per_mtok_usd: str  # the price clients pay now, per million tokens
    completion_per_mtok_usd: str
    demand_tps: float  # completion tokens/s the fleet served over the pricing window
    utilization: float | None  # mean engine load of its routable replicas; None: unknown
    replicas: int  # routable replicas in the fleet now (this host's included)
    capacity_tps: float | None  # completion tokens/s one replica here decodes at full batch; None: unknown
    expected_per_hour_nano: int | None  # this host's share per hour at the assumptions; None: unknown
    expected_per_hour_usd: str | None
    licence: ModelLicence
    # How the agent runs it with vLLM on these GPUs (hostkit.engine_spec.EngineSpec as JSON); None when
    # it does not fit or the GPU type is unknown. `tokenmill-host serve-models` hands it to the agent.
    engine_spec: dict[str, object] | None = None


class HostMarket(msgspec.Struct):
    host_id: str
    name: str
    gpu_type: str | None
    gpu_count: int
    payout_share_bps: int
    # The assumptions behind expected_per_hour: a replica busy at the autoscaler's target utilization,
    # requests of this mean size (the fleet's mix today, else a default), at today's price.
    target_utilization: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    assumption: str  # the same in words
    models: list[MarketModel]


# ---------------------------------------------------------------- host payouts (the host's own settings)
# GET and PUT /hosts/{id}/payout, with the host token; a host sees and changes only its own (403 for
# another host's id). `tokenmill-host payout` shows and sets them.


class HostPayout(msgspec.Struct):
    host_id: str
    method: str  # "stripe", "manual" (the operator pays by other means) or "none" (no destination yet)
    stripe_account: str | None
    threshold_nano: int  # paid once owed reaches it
    threshold_usd: str
    threshold_is_default: bool
    minimum_threshold_usd: str
    owed_nano: int  # earned and not yet paid out
    owed_usd: str
    next: str  # the next payout, in words
    pending_nano: int | None  # a payout under way
    pending_usd: str | None
    last_paid_nano: int | None
    last_paid_usd: str | None
    last_paid_us: int | None


class SetHostPayout(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """PUT /hosts/{id}/payout. A field left out is left as it is. threshold_usd: a decimal USD
    string (at least the router's minimum, whole cents) or "default"; stripe_account: the host's
    Stripe Connect account ("acct_..."), where payouts go from then on."""

    threshold_usd: str | None = None
    stripe_account: str | None = None
