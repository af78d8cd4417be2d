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
    status: str  # active, draining, drained, down, removed
    models: list[str]
    in_flight: int
    outstanding: int
    gpu_type: str | None
    gpus: list[GpuTelemetry]
    cost_per_hour_nano: int
    payout_share_bps: int
    seconds_since_heard: float | None
    agent_version: str


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
