"""What one host could serve and earn (GET /hosts/{id}/market, `tokenmill-host models`).

Per catalogue model: whether this host's GPUs run it (the catalogue's memory at the model's default
quantization against the host's GPU type times its GPU count, the compute capability vLLM needs, a
servable checkpoint: backend/fleet/engine_specs.py, the same spec provisioning writes), its price
now, the fleet's demand and routable replicas (the load tracker, over the pricing window), and what
the host would earn per hour serving it here:

    expected per hour = host_share(target utilization x revenue per hour of one replica at full batch)

with one replica's capacity from backend/catalogue/capacity.py (the host's measured single-stream
speed where it serves the model already, else the catalogue's for its GPUs), requests of the fleet's
mean size today (else DEFAULT_MIX), at the price now, and the host's share by the ledger's settlement
policy. The assumption is that the autoscaler keeps replicas near its target utilization; a model
with little demand fills a new replica less, which `demand_tps` and `utilization` let the host see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backend.catalogue import Catalogue, ModelEntry
from backend.catalogue.capacity import Capacity, replica_capacity, revenue_per_s_at_full
from backend.catalogue.schema import GpuType
from backend.fleet.engine_specs import EngineSpecError, engine_spec
from backend.fleet.registry import HostState
from backend.ledger.settlement_policy import host_share
from backend.metrics.load import LoadTracker
from backend.metrics.projections import DEFAULT_MIX, measured_capacity
from hostkit.engine_spec import EngineSpec, compute_capability

GIB_PER_MIB = 1 / 1024


@dataclass(frozen=True, slots=True)
class Fit:
    capacity: Capacity | None  # one replica here; None when it does not fit or the GPUs are unknown
    spec: EngineSpec | None
    why_not: str  # "" when it fits


@dataclass(frozen=True, slots=True)
class MarketRow:
    entry: ModelEntry
    fit: Fit
    enabled: bool
    serving: bool
    prompt_per_mtok: int
    completion_per_mtok: int
    demand_tps: float
    utilization: float | None
    replicas: int
    expected_per_hour: int | None  # nano-USD, the host's share


@dataclass(frozen=True, slots=True)
class Market:
    gpu_type: str | None
    gpu_count: int
    target_utilization: float
    mean_prompt: float
    mean_completion: float
    rows: list[MarketRow]

    @property
    def assumption(self) -> str:
        return (f"one replica here busy {self.target_utilization:.0%} of the time (the autoscaler's target), "
                f"requests of {self.mean_prompt:.0f} prompt + {self.mean_completion:.0f} completion tokens, "
                "at today's price, times this host's payout share")


def gpu_count(host: HostState) -> int:
    """GPUs the host reports (NVML); one when it reports none (a simulated host, an older agent)."""
    return max(len(host.gpus), 1)


def fit(catalogue: Catalogue, entry: ModelEntry, host: HostState) -> Fit:
    gpu: GpuType | None = catalogue.gpu_by_id.get(host.gpu_type or "")
    if gpu is None:
        what = f"GPU type {host.gpu_type!r} is not in the catalogue" if host.gpu_type else "reports no GPU type"
        return Fit(None, None, f"this host {what}: set gpu_type in the agent config to a catalogue GPU id")
    count = gpu_count(host)
    need = entry.vram_gb[entry.default_quantization]
    cap = replica_capacity(entry, gpu, count)
    if cap is None:
        return Fit(None, None, f"needs {need:g} GB of GPU memory at {entry.default_quantization}; this host has "
                               f"{count} x {gpu.vram_gb} GB ({gpu.name})")
    try:
        spec = engine_spec(catalogue, entry.id, gpu.id, count)
    except EngineSpecError as exc:
        return Fit(None, None, str(exc))
    if compute_capability(gpu.compute_capability) < compute_capability(spec.requirements.min_compute_capability):
        return Fit(None, None, f"needs compute capability {spec.requirements.min_compute_capability} at "
                               f"{spec.quantization}; {gpu.name} has {gpu.compute_capability}")
    memory = sum(g.memory_total_mib for g in host.gpus if g.memory_total_mib) * GIB_PER_MIB
    if host.gpus and memory and memory < need:
        return Fit(None, None, f"needs {need:g} GB of GPU memory; this host's GPUs report {memory:.1f} GB")
    return Fit(cap, spec, "")


def host_market(catalogue: Catalogue, host: HostState, load: LoadTracker, *, enabled: Callable[[str], bool],
                prices: Mapping[str, tuple[int, int]], window_s: float, target_utilization: float,
                mix: tuple[float, float] | None) -> Market:
    """`prices`: model -> (prompt, completion) nano-USD per 1M tokens now (the Pricer's, handed in
    from above: pricing sits above metrics); `mix`: mean prompt and completion tokens of the
    fleet's requests today, None for the default."""
    mean_prompt, mean_completion = mix or DEFAULT_MIX
    rows = []
    for entry in catalogue.models:
        f = fit(catalogue, entry, host)
        serving = entry.id in host.replicas
        cap = f.capacity
        if serving:  # what the host measured beats the catalogue's figure
            measured, _ = measured_capacity(catalogue, host.replicas[entry.id])
            cap = measured or cap
        prompt, completion = prices.get(entry.id, (entry.price.prompt, entry.price.completion))
        expected = None
        if cap is not None and (f.capacity is not None or serving):
            per_hour = revenue_per_s_at_full(cap, mean_prompt, mean_completion, prompt, completion) * 3600
            expected = host_share(int(per_hour * target_utilization), host.payout_share_bps)
        ml = load.load(entry.id, window_s)
        rows.append(MarketRow(entry, Fit(cap, f.spec, f.why_not), enabled(entry.id), serving, prompt, completion,
                              ml.demand_tps, ml.utilization, ml.replicas, expected))
    return Market(host.gpu_type, gpu_count(host), target_utilization, mean_prompt, mean_completion, rows)
