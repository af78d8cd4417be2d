"""Shapes of the provisioning part of the admin API (msgspec Structs). Money is integer nano-USD
in `*_nano` fields with a decimal string beside it for people."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
# The schema lists the providers one can provision from; the handler refuses others with a reason
# (`local` is the simulated fleet `serve --local` runs by itself).
Provider = Annotated[str, msgspec.Meta(description="runpod, vast, lambda or ssh (a machine of yours)",
                                       extra_json_schema={"extra": {"enum": ["runpod", "vast", "lambda", "ssh"]}})]


class OfferOut(msgspec.Struct):
    provider: str
    offer_id: str
    gpu: str | None  # catalogue GPU id; None when the provider's card is not in the catalogue
    gpu_name: str
    gpu_count: int
    vram_gb: float  # per GPU
    price_per_hour_nano: int  # the whole machine
    price_per_hour_usd: str
    region: str | None
    kind: str  # on_demand, community, spot
    # What the model would earn on this machine per hour at its current demand (the last 10
    # minutes' revenue per hour, less host payouts, less this machine's price); None without demand.
    expected_profit_per_h_nano: int | None


class OffersOut(msgspec.Struct):
    model: str
    quantization: str
    vram_needed_gb: float
    offers: list[OfferOut]  # those that fit the model, cheapest first
    # Providers that could not be asked (no credentials, unreachable...), one line each: the
    # operator sees why an offer list is short.
    unavailable: list[str]


class ProvisionRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    provider: Provider
    gpu: str | None = None  # catalogue GPU id to restrict the offers to
    offer_id: str | None = None  # a specific offer from /admin/offers; default: the cheapest that fits
    name: str | None = None  # the host's name; default: derived from provider, GPU and a short id
    engine: Literal["vllm", "sim"] = "vllm"  # sim: the simulated engine (no GPU needed); provider local: always sim
    # provider "ssh": the machine the operator already has (key authentication only)
    ssh_host: str | None = None
    ssh_port: Port = 22
    ssh_user: str = "root"
    # provider "ssh" with engine vllm: how many of the `gpu` cards the machine has (the engines' tensor parallelism)
    gpu_count: Annotated[int, msgspec.Meta(ge=1)] = 1
    # An instance this job itself creates at a provider presents a host key no one has seen: true
    # trusts it on first sight (recorded as confirmed, a warning event) so renting runs unattended;
    # false (the default) waits for the operator. A changed key always fails; provider ssh (the
    # operator's own machine) never trusts.
    trust_new_host_key: bool = False
    # Why it was asked (e.g. the autoscaler's decision): the job's first event, and named in the
    # host-key wait's message.
    reason: str | None = None


class JobEventOut(msgspec.Struct):
    seq: int
    ts_us: int
    # phase: a new stage of the job (renting, waiting for SSH, bootstrap, first heartbeat...)
    # step_started / step_skipped / step_finished / step_failed / output: the playbook's steps
    # reason: why the job was asked (the first event, when the request gave one)
    # host_key: waiting for the operator to confirm an unknown host key (text has the fingerprint),
    #   or a new instance's key trusted on first sight (trust_new_host_key)
    # done / error: the job ended
    kind: str
    text: str
    step: str | None = None


class JobOut(msgspec.Struct):
    id: str
    kind: Literal["provision", "teardown"]
    state: Literal["running", "waiting_host_key", "succeeded", "failed"]
    phase: str
    model: str | None
    provider: str
    host_id: str | None
    host_name: str | None
    instance_id: str | None
    address: str | None  # user@host:port once known
    started_us: int
    finished_us: int | None
    error: str | None
    events: list[JobEventOut]  # those after the `after` the caller gave (all when 0)
    # While state is waiting_host_key: the key the machine presented, to compare and confirm.
    host_key: HostKeyOut | None = None
    reason: str | None = None  # why it was asked (ProvisionRequest.reason), e.g. the autoscaler's decision


class HostKeyOut(msgspec.Struct):
    host: str
    port: int
    key_type: str
    fingerprint: str  # SHA256:... as OpenSSH prints it
    seen_us: int | None = None


class ConfirmHostKey(msgspec.Struct, forbid_unknown_fields=True):
    host: str
    port: Port
    fingerprint: str  # must match the key the host presented


class RunOut(msgspec.Struct):
    """One recorded playbook run."""

    id: str
    playbook: str
    address: str
    host_id: str | None
    started_us: int
    finished_us: int | None
    outcome: str  # running, succeeded, failed, cancelled
    failed_step: str | None
    error: str | None
