"""Shapes of the admin API (msgspec Structs, separate from the tables). Money is integer
nano-USD in `*_nano` fields, with a decimal string beside it for people; money sent to the API
is a decimal string (a float is refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from backend.money import MAX_AMOUNT_NANO, MAX_PRICE_NANO, NANO_PER_USD
from hostkit.protocol import GpuTelemetry

# What the API states (and msgspec enforces) about inputs, so the OpenAPI schema says it too.
NonBlank = Annotated[str, msgspec.Meta(pattern=r"\S", description="not empty, not only spaces")]


def usd_text(max_nano: int) -> Any:
    """A decimal amount of USD up to max_nano, at most 9 decimals (one nano-USD): "25", "0.34",
    "$12.50"; never a float or an exponent. The schema's pattern states it all (the bound, a power
    of ten, as digits); msgspec checks the form only, so that parse_usd names what is wrong with a
    well-formed amount (too precise, above the bound)."""
    top = max_nano // NANO_PER_USD
    digits = len(str(top)) - 1
    if top != 10**digits or max_nano % NANO_PER_USD:
        raise ValueError(f"the pattern needs a power of ten of USD, not {max_nano} nano-USD")
    stated = rf"^\$?0*([0-9]{{1,{digits}}}(\.[0-9]{{1,9}}0*)?|{top}(\.0+)?)$"
    return Annotated[str, msgspec.Meta(pattern=r"^\$?[0-9]+(\.[0-9]+)?$", extra_json_schema={
        "description": f'a decimal string of USD such as "25.00": at most {top:,}, 9 decimals at most',
        "extra": {"pattern": stated}})]


AmountUsd = usd_text(MAX_AMOUNT_NANO)  # a grant or payment
PriceUsd = usd_text(MAX_PRICE_NANO)  # a price per million tokens, a host's cost per hour


# How a client's requests reach us: directly, or through OpenRouter (which keeps its fee of each charge).
Channel = Annotated[Literal["direct", "openrouter"], msgspec.Meta(
    description='"direct", or "openrouter": OpenRouter calls with this client\'s keys and keeps [openrouter] '
                'fee_pct of each charge')]


class CreateClient(msgspec.Struct, forbid_unknown_fields=True):
    name: NonBlank
    id: str | None = None
    channel: Channel = "direct"


class SetClientChannel(msgspec.Struct, forbid_unknown_fields=True):
    channel: Channel


class ClientOut(msgspec.Struct):
    id: str
    name: str
    created_us: int
    balance_nano: int
    available_nano: int
    balance_usd: str
    keys: int
    active_keys: int
    channel: str = "direct"  # "direct" or "openrouter"


class GrantCredit(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: AmountUsd
    # The same key with the same content replays the grant; with other content it is refused (409).
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
    source: Literal["grant", "payment"] = "grant"  # free credit, or a payment received outside Stripe
    note: str | None = None


class CreditOut(msgspec.Struct):
    client_id: str
    transfer: str
    amount_nano: int
    replayed: bool
    balance_nano: int
    balance_usd: str


class IssueKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""


class KeyOut(msgspec.Struct):
    id: str
    client_id: str
    name: str
    prefix: str
    created_us: int
    revoked_us: int | None


class KeyIssued(msgspec.Struct):
    key: KeyOut
    secret: str  # shown once, never again


class ReplicaOut(msgspec.Struct):
    host_id: str
    host_name: str
    host_status: str
    url: str
    ready: bool
    outstanding: int
    ejected: bool
    # The host's hardware check for this model: None until it reports one; no traffic unless passed.
    check_passed: bool | None = None
    check_summary: str = ""


class ModelOut(msgspec.Struct):
    id: str
    name: str
    enabled: bool
    context_length: int
    price_prompt_per_mtok_nano: int
    price_completion_per_mtok_nano: int
    price_prompt_usd: str
    price_completion_usd: str
    replicas: list[ReplicaOut]
    uptime: UptimeOut | None = None


class UptimeOut(msgspec.Struct):
    """A model's uptime as OpenRouter counts it, over the last `window_s`: failures are 5xx answers
    and streams broken after their first byte; 4xx answers (400, 413, 429...) are not counted.
    `ratio` (0..1) is None below `min_requests` requests, as OpenRouter shows none then."""

    requests: int
    failures: int
    window_s: int
    min_requests: int
    ratio: float | None


class EnrollHost(msgspec.Struct, forbid_unknown_fields=True):
    name: NonBlank
    provider: str = "ssh"
    payout_share_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    cost_per_hour_usd: PriceUsd = "0"
    id: str | None = None


class HostOut(msgspec.Struct):
    id: str
    name: str
    provider: str
    status: str  # active, quarantined, draining, drained, down, removed
    models: list[str]
    in_flight: int
    outstanding: int
    gpu_type: str | None
    gpus: list[GpuTelemetry]
    cost_per_hour_nano: int
    payout_share_bps: int
    seconds_since_heard: float | None
    agent_version: str
    last_heard_us: int | None = None  # UTC µs of the last register / heartbeat


class HostEnrolled(msgspec.Struct):
    host: HostOut
    token: str  # the agent's token, shown once, never again


class UsageOut(msgspec.Struct):
    group: str | None
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    charged_nano: int
    host_share_nano: int
    fee_nano: int = 0  # owed to the channel the requests came through (OpenRouter's fee)


class EventOut(msgspec.Struct):
    seq: int
    ts_us: int
    kind: str
    subject: str
    message: str
    level: str


class EventsMissed(msgspec.Struct):
    """In the live events stream (`event: missed`): events this reader lost, because it fell
    behind the backend's bounded queue or they left the backend's ring before it came back."""

    missed: int


class LoopOut(msgspec.Struct):
    """One background loop under the supervisor. Times are UTC µs; null: not yet (or not now)."""

    name: str  # e.g. "fleet.health", "ledger.hold_expiry"
    kind: Literal["every", "schedule", "loop"]  # periodic, calendar schedule, or continuous
    every: str  # what drives it, in words: "every 2s", "monthly on day 2 at 00:00 UTC", "continuous"
    after: list[str]  # loops started before this one (and stopped after it)
    state: Literal["registered", "running", "backing_off", "stopped"]
    runs: int
    restarts: int  # times it raised and was started again
    last_run_us: int | None
    next_run_us: int | None
    last_error: str | None
    last_error_us: int | None


class StatusOut(msgspec.Struct):
    version: str
    simulated: bool  # serving the embedded local fleet and synthetic traffic
    started_us: int
    hosts_up: int
    hosts: int


class WindowOut(msgspec.Struct):
    """Totals over one window. Latency is from request start to its last byte, TTFT to its first
    (successful requests only); None when nothing was served."""

    since_us: int
    until_us: int
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    revenue_nano: int
    payouts_nano: int
    gpu_cost_nano: int
    profit_nano: int
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    # Seconds of the window the router observed (it may have started inside it): rates divide by this.
    observed_s: float = 0.0
    # Requests refused as the client's error (4xx), not in `requests` nor `failed` (the service's
    # errors); None for "today", which the ledger cannot tell (refusals before metering leave no row).
    client_errors: int | None = None
    # Owed to the channels requests came through (OpenRouter's fee); profit is net of it.
    fees_nano: int = 0


class SeriesOut(msgspec.Struct):
    """One value per minute, oldest first: the 60 whole minutes before now, then the minute in
    progress (61 values). Minutes before `observed_from` passed before the router was observing:
    their zeros are no data, not zero traffic."""

    start_us: int
    minute_s: int
    requests: list[int]
    failed: list[int]
    tokens: list[int]
    revenue_nano: list[int]
    payouts_nano: list[int]
    gpu_cost_nano: list[int]
    profit_nano: list[int]
    latency_p50_ms: list[float | None]
    ttft_p50_ms: list[float | None]
    observed_from: int = 0
    client_errors: list[int] = []  # per minute, as `failed` is for the service's errors
    fees_nano: list[int] = []  # per minute: OpenRouter's fee (profit is net of it)


class ModelRatesOut(msgspec.Struct):
    """A model's demand and money as rates over the last `window_s` seconds. GPU cost per hour
    is what its hosts cost now, each host's rate split evenly among the models it serves.
    Utilization is the mean KV-cache use its engines report (0..1), None when none report it."""

    model: str
    window_s: int
    requests_per_s: float
    tokens_per_s: float
    in_flight: int
    utilization: float | None
    revenue_per_h_nano: int
    payouts_per_h_nano: int
    gpu_cost_per_h_nano: int
    profit_per_h_nano: int
    margin_bps: int | None  # profit / revenue in basis points; None without revenue
    latency_p50_ms: float | None
    ttft_p50_ms: float | None
    fees_per_h_nano: int = 0  # OpenRouter's fee on the traffic it brought (profit is net of it)


class MetricsOut(msgspec.Struct):
    now_us: int
    hour: WindowOut
    today: WindowOut  # since 00:00 UTC; money and counts from the ledger, latencies not kept a day
    series: SeriesOut  # the last hour, per minute (see SeriesOut)
    gpu_cost_per_h_nano: int  # what the connected hosts cost per hour now
    models: list[ModelRatesOut]


class ModelMetricsOut(msgspec.Struct):
    rates: ModelRatesOut
    series: SeriesOut  # the last hour, per minute, this model only
