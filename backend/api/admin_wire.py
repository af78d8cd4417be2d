"""Shapes of the admin API (msgspec Structs, separate from the tables). Money is integer
nano-USD in `*_nano` fields, with a decimal string beside it for people; money sent to the API
is a decimal string (a float is refused)."""

from __future__ import annotations

import msgspec

from hostkit.protocol import GpuTelemetry


class CreateClient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id: str | None = None


class ClientOut(msgspec.Struct):
    id: str
    name: str
    created_us: int
    balance_nano: int
    available_nano: int
    balance_usd: str
    keys: int
    active_keys: int


class GrantCredit(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: str  # decimal string, e.g. "25.00"
    idempotency_key: str
    source: str = "grant"  # "grant" (free credit) or "payment" (received outside Stripe)
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


class EnrollHost(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    provider: str = "ssh"
    payout_share_bps: int = 0
    cost_per_hour_usd: str = "0"
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


class EventOut(msgspec.Struct):
    seq: int
    ts_us: int
    kind: str
    subject: str
    message: str
    level: str


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


class SeriesOut(msgspec.Struct):
    """One value per minute, oldest first: the 60 whole minutes before now, then the minute in
    progress (61 values)."""

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
